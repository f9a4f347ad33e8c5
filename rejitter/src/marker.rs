//! Loop prevention: a message the rejitter already re-sent during this recovery is not spread
//! again.
//!
//! The rejitter's event source mapping reads the consumer's own queue, so a message it re-sent
//! comes back to it once its delay is over if the mapping is still on. Giving it another random
//! delay would push it back over and over for as long as the phase lasts, and up to
//! `MAX_DELAY_SECONDS` past its end. The [`MARKER`] attribute stops that: its value, the pass,
//! is the epoch second at which the rejitter re-sent the message (the handler calls
//! [`crate::plan::plan`] with `now_seconds.to_string()`).
//!
//! A record whose marker is recent ([`already_rejittered`]) is not given a new random delay:
//! the handler re-sends it as a fresh copy delayed [`RESEND_DELAY_SECONDS`], with a fresh
//! marker (the current second), and Lambda deletes the record once SQS confirmed the copy, like
//! any re-sent record (a copy SQS does not confirm is listed in `batchItemFailures`, so the
//! record stays on the queue: never lost). While the phase lasts, such a message thus comes back
//! to the rejitter about once per [`RESEND_DELAY_SECONDS`] and is re-sent again, one
//! `SendMessageBatch` entry each time; once the phase is over, the consumer gets it at most
//! [`RESEND_DELAY_SECONDS`] later. Each copy is a new message, so the rejitter adds at most one
//! receive to any message (the one that brought it), and the copy the consumer gets starts
//! with a receive count of 0.
//!
//! A marker from an earlier recovery, or one that is not a time, is ignored: the message is
//! rejittered normally and its marker overwritten. A message the rejitter could not mark (it
//! already has ten attributes, or the marker would make it too large, see
//! [`crate::attributes::with_marker`]) carries no marker and so gets no loop prevention: if its
//! delay runs out while the phase is still on, it is delayed again.
//!
//! That hole is accepted because SQS leaves no other place for a mark: the body must stay
//! byte-exact, ten attributes is a hard limit, the only system attribute a sender may set is
//! `AWSTraceHeader` (which X-Ray and the consumer read), and a standard queue has no group or
//! deduplication id. Dropping or merging an attribute to make room would change what the
//! consumer gets. The cost is bounded: the message is re-sent again, unchanged, only while the
//! phase lasts (at most `RejitterMaxSeconds`), and is never lost or duplicated. A slot-free
//! sign exists, the `SenderId` SQS records for every message (for the rejitter, its role id and
//! session), but using it needs the rejitter's own identity (an STS call, or the role id from
//! the template) and cannot be exercised on the local emulator, which gives every message the
//! account id as its `SenderId`; it is left as a possible improvement.

use aws_lambda_events::event::sqs::SqsMessage;

use crate::attributes::MARKER;

/// The delay of the fresh copy the rejitter sends of a record it already rejittered during this
/// recovery: the longest extra wait such a message gets after the phase ends, and the period of
/// its re-sends while the phase lasts. 60 s keeps the consumer's wait short and the churn to
/// one `SendMessageBatch` entry per such message per minute.
pub const RESEND_DELAY_SECONDS: u32 = 60;

/// Added to `MAX_DELAY_SECONDS` to give the window in which a marker counts as this recovery's:
/// a re-sent message is visible again at most `MAX_DELAY_SECONDS` after it was sent, and the
/// slack covers the rest of the phase (a receive, the Lambda's own run, retries). One SQS
/// maximum delay, 15 minutes.
pub const RECENT_MARKER_SLACK_SECONDS: u64 = 900;

/// How far in the future a marker may lie and still count as recent: clock skew between the
/// Lambda hosts that wrote and read it.
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 60;

/// `RECENT_MARKER_WINDOW_SECONDS`: how old a marker may be and still count as written during
/// this recovery, `max_delay_s + `[`RECENT_MARKER_SLACK_SECONDS`].
pub fn recent_marker_window_seconds(max_delay_s: u32) -> u64 {
    u64::from(max_delay_s) + RECENT_MARKER_SLACK_SECONDS
}

/// The record's marker value, if it has one with a string value (whatever its data type).
pub fn marker_of(record: &SqsMessage) -> Option<&str> {
    record
        .message_attributes
        .get(MARKER)
        .and_then(|a| a.string_value.as_deref())
}

/// The epoch second a marker records: plain ASCII digits that fit a `u64`, else `None`.
pub fn marker_seconds(marker: Option<&str>) -> Option<u64> {
    let marker = marker?;
    // `u64::from_str` accepts a leading `+`; a pass is only ever plain digits.
    if marker.is_empty() || !marker.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    marker.parse().ok()
}

/// Whether a record with this marker was already rejittered during this recovery.
///
/// True when the marker is a whole number of epoch seconds (ASCII digits only) at most
/// [`recent_marker_window_seconds`] before `now_s`, or at most [`MAX_CLOCK_SKEW_SECONDS`] after
/// it. No marker, an unparsable one, an older one (an earlier recovery) or one further in the
/// future is not recent.
pub fn already_rejittered(marker: Option<&str>, now_s: u64, max_delay_s: u32) -> bool {
    let Some(sent_s) = marker_seconds(marker) else {
        return false;
    };
    if sent_s > now_s {
        sent_s - now_s <= MAX_CLOCK_SKEW_SECONDS
    } else {
        now_s - sent_s <= recent_marker_window_seconds(max_delay_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsMessageAttribute;
    use proptest::prelude::*;

    const NOW: u64 = 1_700_000_000;

    fn recent(marker: &str, max_delay_s: u32) -> bool {
        already_rejittered(Some(marker), NOW, max_delay_s)
    }

    #[test]
    fn the_window_is_the_maximum_delay_plus_fifteen_minutes() {
        assert_eq!(recent_marker_window_seconds(0), 900);
        assert_eq!(recent_marker_window_seconds(900), 1800);
        assert_eq!(recent_marker_window_seconds(u32::MAX), 4_294_968_195);
    }

    #[test]
    fn no_marker_is_not_recent() {
        assert!(!already_rejittered(None, NOW, 900));
    }

    #[test]
    fn a_marker_within_the_window_is_recent_up_to_its_edge() {
        assert!(recent(&NOW.to_string(), 0));
        assert!(recent(&(NOW - 1).to_string(), 0));
        assert!(recent(&(NOW - 1800).to_string(), 900));
        assert!(!recent(&(NOW - 1801).to_string(), 900));
        assert!(recent(&(NOW - 930).to_string(), 30));
        assert!(!recent(&(NOW - 931).to_string(), 30));
    }

    #[test]
    fn a_marker_from_an_earlier_recovery_is_ignored() {
        assert!(!recent(&(NOW - 86_400).to_string(), 900));
        assert!(!recent("0", 900));
    }

    #[test]
    fn a_marker_slightly_in_the_future_is_clock_skew() {
        assert!(recent(&(NOW + 60).to_string(), 900));
        assert!(!recent(&(NOW + 61).to_string(), 900));
        assert!(!recent(&u64::MAX.to_string(), 900));
    }

    #[test]
    fn an_unparsable_marker_is_ignored() {
        let now = NOW.to_string();
        for bad in [
            "",
            " ",
            "pass-7",
            "+1700000000",
            "-1",
            " 1700000000",
            "1700000000 ",
            "1700000000.5",
            "1.7e9",
            "18446744073709551616",
            "١٧٠٠٠٠٠٠٠٠",
        ] {
            assert!(!recent(bad, 900), "{bad:?}");
        }
        assert!(recent(&now, 900));
    }

    #[test]
    fn the_marker_is_read_from_the_string_value() {
        let mut record = SqsMessage::default();
        assert_eq!(marker_of(&record), None);
        let mut attribute = SqsMessageAttribute::default();
        attribute.data_type = Some("String".to_owned());
        record
            .message_attributes
            .insert(MARKER.to_owned(), attribute.clone());
        assert_eq!(marker_of(&record), None, "no string value");
        attribute.string_value = Some("1700000000".to_owned());
        record
            .message_attributes
            .insert(MARKER.to_owned(), attribute);
        assert_eq!(marker_of(&record), Some("1700000000"));
    }

    proptest! {
        /// The decision is exactly "within [now - window, now + skew]" for any plain number.
        #[test]
        fn recent_means_inside_the_window(
            now in 0u64..=u64::MAX / 2,
            sent in any::<u64>(),
            max_delay in 0u32..=900,
        ) {
            let inside = sent <= now.saturating_add(MAX_CLOCK_SKEW_SECONDS)
                && sent.saturating_add(recent_marker_window_seconds(max_delay)) >= now;
            prop_assert_eq!(already_rejittered(Some(&sent.to_string()), now, max_delay), inside);
        }

        /// What the rejitter writes is recent when it comes back within the window.
        #[test]
        fn its_own_pass_is_recent_until_the_window_ends(
            sent in 0u64..=u64::MAX / 2,
            max_delay in 0u32..=900,
            pick in any::<proptest::sample::Index>(),
        ) {
            let window = recent_marker_window_seconds(max_delay);
            let age = pick.index(window as usize + 1) as u64;
            let pass = sent.to_string();
            prop_assert!(already_rejittered(Some(&pass), sent + age, max_delay));
            prop_assert!(!already_rejittered(Some(&pass), sent + window + 1, max_delay));
        }

        /// Anything that is not plain digits is never recent, however close its number.
        #[test]
        fn non_digits_are_never_recent(
            marker in "\\PC*".prop_filter("not plain digits", |m| {
                m.is_empty() || !m.bytes().all(|b| b.is_ascii_digit())
            }),
            now in any::<u64>(),
            max_delay in 0u32..=900,
        ) {
            prop_assert!(!already_rejittered(Some(&marker), now, max_delay));
        }
    }
}
