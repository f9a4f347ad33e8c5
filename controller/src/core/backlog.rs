//! When the rejitter phase ends. The rejitter turns visible messages into delayed ones, so
//! the messages not yet spread are the visible ones and those in flight (a batch the rejitter
//! holds, or a message a failed probe hid); delayed ones are spread. `StartRejitter` reads the
//! counts before it switches the rejitter on: the phase's baseline.
//!
//! - **Spread**: the visible count (approximate) reads zero twice in a row, and the count not
//!   yet spread has fallen below the baseline (or nothing was visible to begin with): a
//!   rejitter that holds the whole backlog in flight without re-sending it has spread nothing.
//! - **Stalled**: the count not yet spread has not fallen to a new low for
//!   [`STALL_SECONDS`]. A rejitter that cannot consume leaves it flat: a mapping that reads
//!   `Enabled` but does not poll (nothing in flight), a failing or throttled rejitter
//!   function, or one that cannot send (its batches go in flight and come back visible, the
//!   sum unchanged). A working one re-sends batches within seconds.
//! - **Timed out**: the phase reached `RejitterMaxSeconds`.
//!
//! Every ending stops the rejitter and closes the usual way: whatever is not yet spread stays
//! in the queue for the consumer, so ending early loses nothing.

use serde::{Deserialize, Serialize};

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

/// What the phase remembers of its earlier readings (kept in the workflow's state).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Consecutive readings of an empty visible backlog.
    #[serde(default)]
    pub empty_readings: u32,
    /// The lowest count not yet spread read so far, the baseline included (None: no reading
    /// yet, and the next one is the baseline).
    #[serde(default)]
    pub lowest_unspread: Option<u64>,
    /// When that low was first read (for the baseline, when the rejitter's mapping came on):
    /// the rejitter's last sign of progress.
    #[serde(default)]
    pub progress_at_ms: u64,
    /// Some reading fell below the baseline.
    #[serde(default)]
    pub moved: bool,
    /// Messages visible at the baseline.
    #[serde(default)]
    pub start_visible: u64,
}

impl Progress {
    /// The baseline: the counts before the rejitter is switched on.
    pub fn start(sample: Sample) -> Progress {
        Progress {
            empty_readings: 0,
            lowest_unspread: Some(sample.unspread()),
            progress_at_ms: sample.at_ms,
            moved: false,
            start_visible: sample.visible,
        }
    }
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
    let Some(lowest) = progress.lowest_unspread else {
        // No baseline (a phase started without one): this reading is it.
        return (Progress::start(sample), Decision::Wait);
    };
    let empty_readings = if sample.visible == 0 {
        progress.empty_readings.saturating_add(1)
    } else {
        0
    };
    let unspread = sample.unspread();
    let fell = unspread < lowest;
    let next = Progress {
        empty_readings,
        lowest_unspread: Some(lowest.min(unspread)),
        progress_at_ms: if fell {
            sample.at_ms
        } else {
            progress.progress_at_ms
        },
        moved: progress.moved || fell,
        start_visible: progress.start_visible,
    };
    let elapsed_ms = sample.at_ms.saturating_sub(settings.started_at_ms);
    let idle_ms = sample.at_ms.saturating_sub(next.progress_at_ms);
    let spread = empty_readings >= EMPTY_READINGS_NEEDED && (next.moved || next.start_visible == 0);
    let decision = if spread {
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

    /// The decisions of a run of readings after `baseline`.
    fn run(baseline: Sample, samples: &[Sample], settings: Settings) -> Vec<Decision> {
        let mut progress = Progress::start(baseline);
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
    fn two_empty_readings_in_a_row_after_progress_end_the_phase() {
        let decisions = run(
            sample(0, 383, 0),
            &[sample(5, 0, 10), sample(10, 0, 0)],
            SETTINGS,
        );
        assert_eq!(decisions, [Decision::Wait, Decision::Spread]);
    }

    #[test]
    fn an_empty_start_is_spread_on_two_empty_readings() {
        // Nothing visible to spread (a message a failed probe hid does not count).
        let decisions = run(
            sample(0, 0, 1),
            &[sample(5, 0, 1), sample(10, 0, 1)],
            SETTINGS,
        );
        assert_eq!(decisions, [Decision::Wait, Decision::Spread]);
    }

    #[test]
    fn a_rejitter_holding_the_whole_backlog_in_flight_has_spread_nothing() {
        // The rejitter receives every message and re-sends none: nothing visible, all in
        // flight, until the stall window has passed.
        let readings: Vec<Sample> = (1..=12).map(|i| sample(5 * i, 0, 29)).collect();
        let decisions = run(sample(0, 29, 0), &readings, SETTINGS);
        assert!(decisions[..11].iter().all(|d| d.waits()), "{decisions:?}");
        assert_eq!(decisions[11], Decision::Stalled { idle_seconds: 60 });
    }

    #[test]
    fn a_non_empty_reading_resets_the_streak() {
        let (progress, _) = after_backlog_check(
            Progress {
                empty_readings: 1,
                ..Progress::start(sample(0, 10, 0))
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
        let decisions = run(
            sample(0, 600, 0),
            &[sample(29, 500, 0), sample(30, 400, 0)],
            short,
        );
        assert_eq!(decisions, [Decision::Wait, Decision::TimedOut]);
    }

    #[test]
    fn a_flat_backlog_with_nothing_in_flight_stalls_a_window_after_the_start() {
        // A rejitter that stopped: 383 visible, none in flight, the mapping not polling.
        let readings: Vec<Sample> = (1..=12).map(|i| sample(5 * i, 383, 0)).collect();
        let decisions = run(sample(0, 383, 0), &readings, SETTINGS);
        assert!(decisions[..11].iter().all(|d| d.waits()), "{decisions:?}");
        assert_eq!(decisions[11], Decision::Stalled { idle_seconds: 60 });
    }

    #[test]
    fn batches_that_go_in_flight_and_come_back_are_no_progress() {
        // A failing rejitter: visible falls while its batches are in flight, then they are
        // back; the sum never reaches a new low.
        let readings = [sample(20, 373, 10), sample(40, 363, 20), sample(60, 383, 0)];
        let decisions = run(sample(0, 383, 0), &readings, SETTINGS);
        assert_eq!(decisions[2], Decision::Stalled { idle_seconds: 60 });
    }

    #[test]
    fn a_new_low_restarts_the_window() {
        let readings = [sample(55, 382, 0), sample(110, 382, 0), sample(115, 390, 0)];
        let decisions = run(sample(0, 383, 0), &readings, SETTINGS);
        assert_eq!(
            decisions,
            [
                Decision::Wait,
                Decision::Wait,
                Decision::Stalled { idle_seconds: 60 }
            ]
        );
    }

    #[test]
    fn without_a_baseline_the_first_reading_is_it() {
        let (progress, decision) =
            after_backlog_check(Progress::default(), sample(70, 0, 0), SETTINGS);
        assert_eq!(decision, Decision::Wait);
        assert_eq!(progress, Progress::start(sample(70, 0, 0)));
    }

    #[test]
    fn spread_wins_over_the_other_endings() {
        let late = Progress {
            empty_readings: 1,
            moved: true,
            ..Progress::start(sample(0, 10, 0))
        };
        let (_, decision) = after_backlog_check(late, sample(1_000, 0, 0), SETTINGS);
        assert_eq!(decision, Decision::Spread);
    }

    #[test]
    fn progress_round_trips_and_old_phases_parse() {
        let progress = Progress {
            empty_readings: 1,
            lowest_unspread: Some(7),
            progress_at_ms: 9,
            moved: true,
            start_visible: 12,
        };
        let json = serde_json::to_value(progress).unwrap();
        assert_eq!(serde_json::from_value::<Progress>(json).unwrap(), progress);
        let old: Progress = serde_json::from_str(r#"{"empty_readings": 1}"#).unwrap();
        assert_eq!(old.lowest_unspread, None);
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

    fn baseline(settings: Settings, visible: u64, in_flight: u64) -> Sample {
        Sample {
            at_ms: settings.started_at_ms,
            visible,
            in_flight,
            delayed: 0,
        }
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
            let first = baseline(settings, unspread, 0);
            let counts: Vec<(u64, u64, u64)> = steps
                .iter()
                .map(|(fall, in_flight)| {
                    unspread -= fall;
                    let in_flight = (*in_flight).min(unspread);
                    (unspread - in_flight, in_flight, 0)
                })
                .collect();
            for decision in run(first, &readings(settings, gaps, counts), settings) {
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
            let decisions = run(baseline(settings, visible, 0), &samples, settings);
            for (sample, decision) in samples.iter().zip(&decisions) {
                let elapsed = sample.at_ms - settings.started_at_ms;
                let expected = if elapsed >= u64::from(settings.max_seconds) * 1000 {
                    Decision::TimedOut
                } else if elapsed >= u64::from(settings.stall_seconds) * 1000 {
                    Decision::Stalled { idle_seconds: elapsed / 1000 }
                } else {
                    Decision::Wait
                };
                prop_assert_eq!(*decision, expected);
            }
        }

        #[test]
        fn the_decision_never_waits_past_rejitter_max_seconds(
            settings in settings(),
            start in (0u64..1_000, 0u64..1_000),
            gaps in prop::collection::vec(0u64..200_000, 1..40),
            counts in prop::collection::vec((0u64..1_000, 0u64..1_000, 0u64..1_000), 40),
        ) {
            let samples = readings(settings, gaps, counts);
            let first = baseline(settings, start.0, start.1);
            for (sample, decision) in samples.iter().zip(run(first, &samples, settings)) {
                let elapsed = sample.at_ms - settings.started_at_ms;
                if elapsed >= u64::from(settings.max_seconds) * 1000 {
                    prop_assert!(!decision.waits(), "{:?} after {} ms", decision, elapsed);
                }
            }
        }

        #[test]
        fn spread_needs_two_empty_readings_and_a_fall_below_the_baseline(
            settings in settings(),
            start in (1u64..1_000, 0u64..1_000),
            gaps in prop::collection::vec(0u64..20_000, 1..40),
            counts in prop::collection::vec((0u64..3, 0u64..1_000, 0u64..1_000), 40),
        ) {
            let samples = readings(settings, gaps, counts);
            let first = baseline(settings, start.0, start.1);
            let decisions = run(first, &samples, settings);
            for (i, decision) in decisions.iter().enumerate() {
                if *decision == Decision::Spread {
                    prop_assert!(i >= 1 && samples[i].visible == 0 && samples[i - 1].visible == 0);
                    prop_assert!(samples[..=i].iter().any(|s| s.unspread() < first.unspread()));
                }
            }
        }
    }
}
