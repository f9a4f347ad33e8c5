//! When the rejitter phase ends. The rejitter turns visible messages into delayed ones, so
//! the messages not yet spread are the visible ones and those in flight (a batch the rejitter
//! holds, or a message a failed probe hid); delayed ones are spread.
//!
//! - **Spread**: the visible count (approximate) reads zero twice in a row.
//! - **Stalled**: the count not yet spread has not fallen to a new low for
//!   [`STALL_SECONDS`]. A rejitter that cannot consume leaves it flat: a mapping that reads
//!   `Enabled` but does not poll (nothing in flight), a failing or throttled rejitter
//!   function, or one that cannot send (its batches go in flight and come back visible, the
//!   sum unchanged). A working one re-sends batches within seconds.
//! - **Timed out**: the phase reached `RejitterMaxSeconds`.
//!
//! Every ending stops the rejitter and closes the usual way: whatever is not yet spread stays
//! in the queue for the consumer, so ending early loses nothing.

/// Consecutive empty readings that count as "spread".
pub const EMPTY_READINGS_NEEDED: u32 = 2;

/// How long the count not yet spread may go without a new low before the phase ends. A
/// working rejitter moves a batch in well under a second; a minute without one is a
/// rejitter that cannot consume, and every minute more holds a healthy consumer off.
pub const STALL_SECONDS: u32 = 60;

/// One reading of the queue's approximate counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at_ms: u64,
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

impl Sample {
    /// The messages the rejitter has not spread yet.
    pub fn unspread(&self) -> u64 {
        self.visible.saturating_add(self.in_flight)
    }
}

/// What the phase remembers of its earlier readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Consecutive readings of an empty visible backlog.
    pub empty_readings: u32,
    /// The lowest count not yet spread read so far (None before the first reading).
    pub lowest_unspread: Option<u64>,
    /// When that low was first read (the first reading starts the stall window).
    pub progress_at_ms: u64,
}

/// The phase's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub started_at_ms: u64,
    /// `RejitterMaxSeconds`.
    pub max_seconds: u32,
    pub stall_seconds: u32,
}

/// What a backlog check decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Still spreading: check again.
    Wait,
    /// Nothing visible, twice in a row.
    Spread,
    /// `RejitterMaxSeconds` reached.
    TimedOut,
    /// Nothing spread for `idle_seconds` (at least the stall window).
    Stalled { idle_seconds: u64 },
}

impl Decision {
    /// Whether the phase goes on.
    pub fn waits(self) -> bool {
        self == Decision::Wait
    }
}

/// Folds `sample` into `progress` and decides; the returned progress is what the next check
/// starts from.
pub fn after_backlog_check(
    progress: Progress,
    sample: Sample,
    settings: Settings,
) -> (Progress, Decision) {
    let empty_readings = if sample.visible == 0 {
        progress.empty_readings.saturating_add(1)
    } else {
        0
    };
    let unspread = sample.unspread();
    let (lowest_unspread, progress_at_ms) = match progress.lowest_unspread {
        Some(lowest) if unspread >= lowest => (lowest, progress.progress_at_ms),
        _ => (unspread, sample.at_ms),
    };
    let next = Progress {
        empty_readings,
        lowest_unspread: Some(lowest_unspread),
        progress_at_ms,
    };
    let elapsed_ms = sample.at_ms.saturating_sub(settings.started_at_ms);
    let idle_ms = sample.at_ms.saturating_sub(progress_at_ms);
    let decision = if empty_readings >= EMPTY_READINGS_NEEDED {
        Decision::Spread
    } else if elapsed_ms >= u64::from(settings.max_seconds) * 1000 {
        Decision::TimedOut
    } else if idle_ms >= u64::from(settings.stall_seconds) * 1000 {
        Decision::Stalled {
            idle_seconds: idle_ms / 1000,
        }
    } else {
        Decision::Wait
    };
    (next, decision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SETTINGS: Settings = Settings {
        started_at_ms: 0,
        max_seconds: 900,
        stall_seconds: STALL_SECONDS,
    };

    fn sample(at_s: u64, visible: u64, in_flight: u64) -> Sample {
        Sample {
            at_ms: at_s * 1000,
            visible,
            in_flight,
            delayed: 0,
        }
    }

    /// The decisions of a run of readings, from the phase's start.
    fn run(samples: &[Sample], settings: Settings) -> Vec<Decision> {
        let mut progress = Progress::default();
        samples
            .iter()
            .map(|s| {
                let (next, decision) = after_backlog_check(progress, *s, settings);
                progress = next;
                decision
            })
            .collect()
    }

    #[test]
    fn two_empty_readings_in_a_row_end_the_phase() {
        let decisions = run(&[sample(5, 0, 0), sample(10, 0, 0)], SETTINGS);
        assert_eq!(decisions, [Decision::Wait, Decision::Spread]);
    }

    #[test]
    fn a_non_empty_reading_resets_the_streak() {
        let (progress, _) = after_backlog_check(
            Progress {
                empty_readings: 1,
                ..Progress::default()
            },
            sample(10, 3, 0),
            SETTINGS,
        );
        assert_eq!(progress.empty_readings, 0);
    }

    #[test]
    fn the_time_limit_ends_the_phase_even_with_a_falling_backlog() {
        let short = Settings {
            max_seconds: 30,
            ..SETTINGS
        };
        let decisions = run(&[sample(29, 500, 0), sample(30, 400, 0)], short);
        assert_eq!(decisions, [Decision::Wait, Decision::TimedOut]);
    }

    #[test]
    fn a_flat_backlog_with_nothing_in_flight_stalls_a_window_after_the_first_reading() {
        // The picture: 383 visible, none in flight, the mapping not polling.
        let readings: Vec<Sample> = (1..=14).map(|i| sample(5 * i, 383, 0)).collect();
        let decisions = run(&readings, SETTINGS);
        assert!(decisions[..12].iter().all(|d| d.waits()), "{decisions:?}");
        assert_eq!(decisions[12], Decision::Stalled { idle_seconds: 60 });
    }

    #[test]
    fn batches_that_go_in_flight_and_come_back_are_no_progress() {
        // A failing rejitter: visible falls while its batches are in flight, then they are
        // back; the sum never reaches a new low.
        let readings = [
            sample(5, 383, 0),
            sample(20, 373, 10),
            sample(40, 363, 20),
            sample(65, 383, 0),
        ];
        let decisions = run(&readings, SETTINGS);
        assert_eq!(decisions[3], Decision::Stalled { idle_seconds: 60 });
    }

    #[test]
    fn a_new_low_restarts_the_window() {
        let readings = [sample(5, 383, 0), sample(60, 382, 0), sample(115, 382, 0)];
        let decisions = run(&readings, SETTINGS);
        assert_eq!(decisions, [Decision::Wait; 3]);
        let (_, later) = after_backlog_check(
            Progress {
                empty_readings: 0,
                lowest_unspread: Some(382),
                progress_at_ms: 60_000,
            },
            sample(120, 390, 0),
            SETTINGS,
        );
        assert_eq!(later, Decision::Stalled { idle_seconds: 60 });
    }

    #[test]
    fn spread_wins_over_the_other_endings() {
        let late = Progress {
            empty_readings: 1,
            lowest_unspread: Some(0),
            progress_at_ms: 0,
        };
        let (_, decision) = after_backlog_check(late, sample(1_000, 0, 0), SETTINGS);
        assert_eq!(decision, Decision::Spread);
    }

    fn settings() -> impl Strategy<Value = Settings> {
        (0u64..1_000_000, 30u32..2_000, 1u32..300).prop_map(|(start, max, stall)| Settings {
            started_at_ms: start,
            max_seconds: max,
            stall_seconds: stall,
        })
    }

    /// Readings from the phase's start: gaps in ms and (visible, in flight, delayed).
    fn readings(settings: Settings, gaps: Vec<u64>, counts: Vec<(u64, u64, u64)>) -> Vec<Sample> {
        let mut at = settings.started_at_ms;
        gaps.into_iter()
            .zip(counts)
            .map(|(gap, (visible, in_flight, delayed))| {
                at += gap;
                Sample {
                    at_ms: at,
                    visible,
                    in_flight,
                    delayed,
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn a_falling_backlog_is_never_judged_stalled(
            settings in settings(),
            gaps in prop::collection::vec(0u64..400_000, 1..40),
            start in 100u64..100_000,
            steps in prop::collection::vec((1u64..50, 0u64..50), 40),
        ) {
            // Each reading has fewer messages visible or in flight than the one before.
            let mut unspread = start + 50 * 40;
            let counts: Vec<(u64, u64, u64)> = steps
                .iter()
                .map(|(fall, in_flight)| {
                    unspread -= fall;
                    let in_flight = (*in_flight).min(unspread);
                    (unspread - in_flight, in_flight, 0)
                })
                .collect();
            for decision in run(&readings(settings, gaps, counts), settings) {
                prop_assert!(!matches!(decision, Decision::Stalled { .. }), "{:?}", decision);
            }
        }

        #[test]
        fn a_flat_backlog_with_nothing_in_flight_is_judged_stalled_once_the_window_passed(
            settings in settings(),
            visible in 1u64..100_000,
            gap in 1_000u64..20_000,
        ) {
            let count = (u64::from(settings.max_seconds) * 1000 / gap + 2) as usize;
            let samples = readings(settings, vec![gap; count], vec![(visible, 0, 0); count]);
            let first = samples[0].at_ms;
            let decisions = run(&samples, settings);
            for (sample, decision) in samples.iter().zip(&decisions) {
                let idle = sample.at_ms - first;
                let elapsed = sample.at_ms - settings.started_at_ms;
                let timed_out = elapsed >= u64::from(settings.max_seconds) * 1000;
                let stalled = idle >= u64::from(settings.stall_seconds) * 1000;
                let expected = if timed_out {
                    Decision::TimedOut
                } else if stalled {
                    Decision::Stalled { idle_seconds: idle / 1000 }
                } else {
                    Decision::Wait
                };
                prop_assert_eq!(*decision, expected);
            }
        }

        #[test]
        fn the_decision_never_waits_past_rejitter_max_seconds(
            settings in settings(),
            gaps in prop::collection::vec(0u64..200_000, 1..40),
            counts in prop::collection::vec((0u64..1_000, 0u64..1_000, 0u64..1_000), 40),
        ) {
            let samples = readings(settings, gaps, counts);
            for (sample, decision) in samples.iter().zip(run(&samples, settings)) {
                let elapsed = sample.at_ms - settings.started_at_ms;
                if elapsed >= u64::from(settings.max_seconds) * 1000 {
                    prop_assert!(!decision.waits(), "{:?} after {} ms", decision, elapsed);
                }
            }
        }

        #[test]
        fn never_ends_on_a_single_empty_reading_while_it_moves(
            visible in 0u64..10,
            elapsed in 0u64..59_000,
        ) {
            let (progress, decision) =
                after_backlog_check(Progress::default(), sample(0, visible, 0), SETTINGS);
            prop_assert!(progress.empty_readings <= 1);
            prop_assert_eq!(decision, Decision::Wait);
            let (_, decision) = after_backlog_check(
                progress,
                Sample { at_ms: elapsed, visible: 10, in_flight: 0, delayed: 0 },
                SETTINGS,
            );
            prop_assert_eq!(decision, Decision::Wait);
        }
    }
}
