//! The signal that opens the circuit, and the same signal read during the slow start.
//!
//! The alarm the template creates watches one of four signals (`AlarmSignal`); a user's own
//! alarm (`AlarmArn`) is `custom`. The half-open ramp cannot wait for an alarm's window, so it
//! reads the signal's raw metrics since the ramp began and judges them here: a consumer that
//! fails records, raises errors or hangs during the ramp reopens the circuit, whichever way
//! the alarm would have seen it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What the breaker's alarm watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Signal {
    /// The error share, failed records or a stalled consumer (the default).
    Any,
    /// The share of received messages the consumer did not delete.
    FailedRecords,
    /// The share of the consumer's invocations that raised an error.
    ErrorShare,
    /// The consumer's `Errors` count.
    Errors,
    /// A user's own alarm: its metrics are unknown, so the ramp watches every shape.
    Custom,
}

/// The names `ALARM_SIGNAL` accepts, as the template writes them.
pub const SIGNAL_NAMES: &str = "any, failed-records, error-share, errors, custom";

impl Signal {
    pub fn parse(name: &str) -> Option<Signal> {
        Some(match name {
            "any" => Signal::Any,
            "failed-records" => Signal::FailedRecords,
            "error-share" => Signal::ErrorShare,
            "errors" => Signal::Errors,
            "custom" => Signal::Custom,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Any => "any",
            Signal::FailedRecords => "failed-records",
            Signal::ErrorShare => "error-share",
            Signal::Errors => "errors",
            Signal::Custom => "custom",
        }
    }

    /// Does the signal count the queue's records (received but not deleted)?
    pub fn watches_records(self) -> bool {
        matches!(self, Signal::Any | Signal::FailedRecords | Signal::Custom)
    }

    /// Does the signal count the consumer's raised errors?
    pub fn watches_errors(self) -> bool {
        matches!(
            self,
            Signal::Any | Signal::ErrorShare | Signal::Errors | Signal::Custom
        )
    }

    /// Can the alarm be a composite (the created `any`, or a user's own)? The others are
    /// metric alarms by construction.
    pub fn may_be_composite(self) -> bool {
        matches!(self, Signal::Any | Signal::Custom)
    }

    /// Does the signal see a consumer that holds messages and deletes none?
    pub fn watches_hangs(self) -> bool {
        matches!(self, Signal::Any | Signal::Custom)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The signal and its settings, as the template passes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalConfig {
    pub signal: Signal,
    /// A share of failed records at or above this percentage fails the ramp.
    pub failure_percent: u32,
    /// Messages in flight with none deleted for this long is a hang.
    pub hang_seconds: u32,
}

impl Default for SignalConfig {
    /// The template's defaults: `any`, 20 %, 3 periods of 60 s.
    fn default() -> Self {
        SignalConfig {
            signal: Signal::Any,
            failure_percent: 20,
            hang_seconds: 180,
        }
    }
}

/// The queue's counts as CloudWatch holds them (`AWS/SQS`, per minute): messages received and
/// deleted from the start of the minute holding a moment until now, and the messages in
/// flight in the latest minute with data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    pub received: u64,
    pub deleted: u64,
    pub in_flight: u64,
}

/// What the ramp saw since it began: the counts at its start are the baseline (their first
/// minute may hold activity from before the ramp).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    /// The consumer's `Errors`, baseline subtracted.
    pub errors: u64,
    /// The queue's counts now and at the ramp's start.
    pub records: Option<(QueueCounts, QueueCounts)>,
    /// The most messages the consumer can be working on at once: the ramp's cap times the
    /// mapping's batch size.
    pub processing: u64,
    /// Seconds since the ramp began.
    pub elapsed_seconds: u64,
}

/// Why the consumer counts as failing again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failing {
    /// It raised errors.
    Errors { errors: u64 },
    /// It left `failed` of the `received` messages in the queue.
    Records { failed: u64, received: u64 },
    /// It held messages for `seconds` and deleted none.
    Stalled { seconds: u64 },
}

impl fmt::Display for Failing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failing::Errors { errors } => write!(f, "the consumer raised {errors} errors"),
            Failing::Records { failed, received } => write!(
                f,
                "the consumer left {failed} of the {received} messages it received in the queue"
            ),
            Failing::Stalled { seconds } => write!(
                f,
                "the consumer held messages for {seconds} s and deleted none"
            ),
        }
    }
}

/// Messages received and not deleted between two counts, less those the consumer may still
/// be working on (in flight now, up to `processing`): the receives that failed. A failed
/// record stays in flight too, until its visibility timeout ends, so in flight beyond what
/// the consumer can hold at once are failures. In flight is the latest minute's maximum,
/// which at the ramp's start may already hold more than the consumer holds now: it is not
/// taken as a baseline, or the messages being worked on now would count as failed.
pub fn failed_records(start: QueueCounts, now: QueueCounts, processing: u64) -> (u64, u64) {
    let received = now.received.saturating_sub(start.received);
    let deleted = now.deleted.saturating_sub(start.deleted);
    let working = now.in_flight.min(processing);
    let failed = received.saturating_sub(deleted.saturating_add(working));
    (failed, received)
}

/// Is the consumer failing again, by the signal that opened the circuit? Errors fail the ramp
/// at the first one (as a probe would); records when their share reaches the alarm's
/// percentage (the counts are approximate, like SQS's own); a hang once the alarm's hang
/// window has passed with messages in flight and none deleted.
pub fn failing(config: &SignalConfig, observed: &Observed) -> Option<Failing> {
    let signal = config.signal;
    if signal.watches_errors() && observed.errors > 0 {
        return Some(Failing::Errors {
            errors: observed.errors,
        });
    }
    let (start, now) = observed.records.filter(|_| signal.watches_records())?;
    let (failed, received) = failed_records(start, now, observed.processing);
    if failed > 0 && failed * 100 >= u64::from(config.failure_percent) * received {
        return Some(Failing::Records { failed, received });
    }
    let deleted = now.deleted.saturating_sub(start.deleted);
    if signal.watches_hangs()
        && received > 0
        && now.in_flight > 0
        && deleted == 0
        && observed.elapsed_seconds >= u64::from(config.hang_seconds.max(1))
    {
        return Some(Failing::Stalled {
            seconds: observed.elapsed_seconds,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts(received: u64, deleted: u64, in_flight: u64) -> QueueCounts {
        QueueCounts {
            received,
            deleted,
            in_flight,
        }
    }

    /// Two batches of 10 at once.
    const PROCESSING: u64 = 20;

    fn observed(start: QueueCounts, now: QueueCounts, elapsed_seconds: u64) -> Observed {
        Observed {
            errors: 0,
            records: Some((start, now)),
            processing: PROCESSING,
            elapsed_seconds,
        }
    }

    #[test]
    fn every_name_the_template_writes_parses_back() {
        for name in SIGNAL_NAMES.split(", ") {
            assert_eq!(Signal::parse(name).map(Signal::as_str), Some(name));
        }
        assert_eq!(Signal::parse("Errors"), None);
    }

    #[test]
    fn receives_the_consumer_may_still_be_working_on_are_not_failures() {
        // 40 received since the start, 25 deleted, 15 more in flight than at the start.
        let start = counts(10, 10, 0);
        assert_eq!(failed_records(start, counts(50, 35, 15), 20), (0, 40));
        assert_eq!(failed_records(start, counts(50, 35, 5), 20), (10, 40));
        // More in flight than it can work on at once: failed records waiting out their
        // visibility timeout.
        assert_eq!(failed_records(start, counts(50, 10, 40), 20), (20, 40));
    }

    #[test]
    fn a_consumer_returning_every_record_in_batch_item_failures_fails_the_ramp() {
        let config = SignalConfig::default();
        // Every record failed and is still in flight, waiting out its visibility timeout.
        let seen = observed(counts(0, 0, 0), counts(30, 0, 30), 20);
        assert_eq!(
            failing(&config, &seen),
            Some(Failing::Records {
                failed: 10,
                received: 30
            })
        );
    }

    #[test]
    fn the_odd_poison_message_does_not_fail_the_ramp() {
        let config = SignalConfig::default();
        // 200 received, 199 deleted.
        let seen = observed(counts(0, 0, 0), counts(200, 199, 0), 60);
        assert_eq!(failing(&config, &seen), None);
    }

    #[test]
    fn a_hang_fails_the_ramp_once_the_hang_window_has_passed() {
        let config = SignalConfig::default();
        let held = |elapsed| observed(counts(5, 5, 0), counts(25, 5, 20), elapsed);
        assert_eq!(failing(&config, &held(179)), None);
        assert_eq!(
            failing(&config, &held(180)),
            Some(Failing::Stalled { seconds: 180 })
        );
        // The errors signal cannot see it.
        let errors = SignalConfig {
            signal: Signal::Errors,
            ..config
        };
        assert_eq!(failing(&errors, &held(600)), None);
    }

    #[test]
    fn errors_fail_the_ramp_at_the_first_one_for_the_signals_that_count_them() {
        let seen = Observed {
            errors: 1,
            records: None,
            processing: PROCESSING,
            elapsed_seconds: 5,
        };
        for signal in [
            Signal::Any,
            Signal::Errors,
            Signal::ErrorShare,
            Signal::Custom,
        ] {
            let config = SignalConfig {
                signal,
                ..SignalConfig::default()
            };
            assert_eq!(failing(&config, &seen), Some(Failing::Errors { errors: 1 }));
        }
        // The queue's failed records see the errors as failed records instead.
        let records = SignalConfig {
            signal: Signal::FailedRecords,
            ..SignalConfig::default()
        };
        assert_eq!(failing(&records, &seen), None);
    }

    proptest! {
        /// A consumer that deletes everything it received (whatever is still in flight)
        /// never fails the ramp by its records, and never counts as hung.
        #[test]
        fn a_healthy_consumer_never_fails_the_ramp(
            start in (0u64..1000, 0u64..1000, 0u64..50),
            received in 0u64..5000,
            in_flight in 0u64..=PROCESSING,
            elapsed in 0u64..3600,
            percent in 1u32..=100,
            signal in prop::sample::select(vec![Signal::Any, Signal::FailedRecords, Signal::Custom]),
        ) {
            let start = counts(start.0, start.1, start.2);
            let now = counts(
                start.received + received,
                start.deleted + received.saturating_sub(in_flight),
                start.in_flight + in_flight.min(received),
            );
            let config = SignalConfig { signal, failure_percent: percent, hang_seconds: 180 };
            let verdict = failing(&config, &observed(start, now, elapsed));
            // Deleted something, received nothing, or not yet held for the hang window.
            let healthy = received > in_flight || received == 0 || elapsed < 180;
            if healthy {
                prop_assert_eq!(verdict, None);
            }
        }

        /// In flight is the latest minute's maximum: at the ramp's start it may already hold
        /// more than the consumer holds later in the same minute (a probe, the previous
        /// ramp). A healthy consumer's messages in flight are still not failures.
        #[test]
        fn a_minute_maximum_at_the_start_hides_no_healthy_work(
            start in (0u64..1000, 0u64..1000, 0u64..200),
            received in 0u64..5000,
            working in 0u64..=PROCESSING,
            percent in 1u32..=100,
        ) {
            let start = counts(start.0, start.1, start.2);
            let working = working.min(received);
            let now = counts(
                start.received + received,
                start.deleted + received - working,
                start.in_flight.max(working),
            );
            let config = SignalConfig { signal: Signal::FailedRecords, failure_percent: percent, hang_seconds: 180 };
            prop_assert_eq!(failing(&config, &observed(start, now, 10)), None);
        }

        /// Failed records never exceed what was received, and fail the ramp exactly when
        /// their share reaches the percentage.
        #[test]
        fn failed_records_are_bounded_by_receives(
            received in 0u64..5000,
            deleted in 0u64..5000,
            in_flight in 0u64..100,
            percent in 1u32..=100,
        ) {
            let start = counts(0, 0, 0);
            let now = counts(received, deleted, in_flight);
            let (failed, got) = failed_records(start, now, PROCESSING);
            prop_assert!(failed <= received);
            prop_assert_eq!(got, received);
            let config = SignalConfig { signal: Signal::FailedRecords, failure_percent: percent, hang_seconds: 180 };
            let verdict = failing(&config, &observed(start, now, 0));
            let expected = failed > 0 && failed * 100 >= u64::from(percent) * received;
            prop_assert_eq!(verdict.is_some(), expected);
        }
    }
}
