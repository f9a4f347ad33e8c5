//! Slow start: after a healthy probe the circuit is half-open. The consumer's mapping is
//! enabled with `ScalingConfig.MaximumConcurrency` at [`START`] and the cap doubles, step by
//! step over `SlowStartSeconds`, until it is back to what the mapping had (or removed, if it
//! had none); only then does the circuit close. Each step first asks whether the consumer
//! raised errors since the ramp began: any error reopens the circuit.
//!
//! The cap is the mapping's own knob for how many batches it processes at once, so a
//! recovered but fragile dependency takes the backlog at 2, 4, 8, ... concurrent batches
//! instead of the mapping's full burst.

use crate::core::signal::{Failing, QueueCounts};
use serde::{Deserialize, Serialize};

/// The smallest `MaximumConcurrency` an SQS mapping accepts: the ramp's first level unless
/// `SlowStartConcurrency` says otherwise.
pub const START: u32 = 2;
/// The largest `MaximumConcurrency` an SQS mapping accepts: a mapping without a cap ramps up
/// to here, then the cap is removed.
pub const CEILING: u32 = 1000;
/// The longest `SlowStartSeconds`.
pub const MAX_SECONDS: u32 = 3600;

/// The caps the ramp sets, in order: doubling from `start`, each below the mapping's own
/// `original` cap (or [`CEILING`] without one). The step after the last gives `original` back.
pub fn levels(start: u32, original: Option<u32>) -> Vec<u32> {
    let top = original.unwrap_or(CEILING);
    let mut levels = Vec::new();
    let mut level = start.max(START);
    while level < top {
        levels.push(level);
        level = level.saturating_mul(2);
    }
    levels
}

/// How long each level holds: the ramp's time shared evenly, at least one second.
pub fn step_seconds(slow_start_seconds: u32, start: u32, original: Option<u32>) -> u32 {
    let steps = levels(start, original).len().max(1) as u32;
    (slow_start_seconds / steps).max(1)
}

/// Whether a ramp runs, given the mapping as the circuit closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Ramp from the start level; the mapping's own cap is `original`.
    Ramp { original: Option<u32> },
    /// Close at once, for this reason.
    Skip(String),
}

pub fn plan(slow_start_seconds: u32, start: u32, original: Option<u32>, provisioned: bool) -> Plan {
    if slow_start_seconds == 0 {
        return Plan::Skip("slow start is off (SlowStartSeconds 0)".into());
    }
    // Provisioned pollers are the owners' capacity reservation; MaximumConcurrency does not
    // apply to them, and resizing them is a cost decision the breaker does not make.
    if provisioned {
        return Plan::Skip(
            "the mapping runs in provisioned mode (ProvisionedPollerConfig): the breaker \
             leaves its pollers alone and closes without a slow start"
                .into(),
        );
    }
    if levels(start, original).is_empty() {
        return Plan::Skip(format!(
            "the mapping's MaximumConcurrency is already {}, at most the slow start's first \
             step ({start})",
            original.unwrap_or(START)
        ));
    }
    Plan::Ramp { original }
}

/// The half-open phase as the workflow carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ramp {
    /// The first level.
    pub start: u32,
    /// The mapping's own cap before the ramp (`None`: it had none).
    pub original: Option<u32>,
    /// The cap the breaker set last.
    pub level: u32,
    pub started_at_ms: u64,
    /// The consumer's `Errors` already counted in the ramp's first minute when it began:
    /// only errors above it happened during the ramp.
    pub errors_baseline: u64,
    /// The queue's counts in the ramp's first minute when it began, for the signals that
    /// watch records (`None` for the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_baseline: Option<QueueCounts>,
}

impl Ramp {
    /// The level after this one; `None` when the next step gives the original back.
    pub fn next_level(&self) -> Option<u32> {
        levels(self.start, self.original)
            .into_iter()
            .find(|&level| level > self.level)
    }
}

/// What a ramp step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RampStep {
    /// Raise the cap to this level and wait another step.
    Raise(u32),
    /// The last level held: close the circuit, which gives the original cap back.
    Finish,
    /// The consumer failed again, by the signal that opened the circuit: reopen it.
    Reopen { why: Failing },
    /// Someone set the cap (`now`) during the ramp: stop ramping and keep their value.
    Changed { now: Option<u32> },
}

/// The decision of one ramp step, from whether the consumer fails again by the signal that
/// opened the circuit (`core::signal::failing`) and the mapping's cap as read now. The cap
/// may already be the next level: the step was retried after it raised it.
pub fn step(ramp: &Ramp, failing: Option<Failing>, cap_now: Option<u32>) -> RampStep {
    if let Some(why) = failing {
        return RampStep::Reopen { why };
    }
    let next = ramp.next_level();
    if cap_now != Some(ramp.level) && (next.is_none() || cap_now != next) {
        return RampStep::Changed { now: cap_now };
    }
    match next {
        Some(level) => RampStep::Raise(level),
        None => RampStep::Finish,
    }
}

/// The cap the breaker set on the mapping, recorded in the circuit item before each change so
/// that every ending gives the original back, and only while the mapping still has the
/// breaker's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConcurrencyChange {
    /// The mapping's own cap (`None`: it had none, and giving back removes the cap).
    pub original: Option<u32>,
    /// The cap being set.
    pub set: u32,
    /// The cap set before it: a step that failed between recording and setting left this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<u32>,
}

impl ConcurrencyChange {
    /// Whether the mapping's cap `now` is the breaker's, so giving back may overwrite it.
    pub fn is_ours(&self, now: Option<u32>) -> bool {
        now == Some(self.set) || (now.is_some() && now == self.previous)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ramp(original: Option<u32>, level: u32) -> Ramp {
        Ramp {
            start: START,
            original,
            level,
            started_at_ms: 0,
            errors_baseline: 3,
            records_baseline: None,
        }
    }

    #[test]
    fn levels_double_from_two_up_to_the_original_cap() {
        assert_eq!(levels(2, Some(10)), vec![2, 4, 8]);
        assert_eq!(levels(2, Some(16)), vec![2, 4, 8]);
        assert_eq!(levels(2, Some(3)), vec![2]);
        assert_eq!(levels(2, Some(2)), Vec::<u32>::new());
        assert_eq!(levels(5, Some(30)), vec![5, 10, 20]);
        assert_eq!(levels(5, Some(5)), Vec::<u32>::new());
        assert_eq!(
            levels(2, None),
            vec![2, 4, 8, 16, 32, 64, 128, 256, 512],
            "without a cap the ramp goes up to the largest one, then removes it"
        );
    }

    #[test]
    fn the_ramp_time_is_shared_by_its_levels() {
        assert_eq!(step_seconds(120, 2, Some(10)), 40);
        assert_eq!(step_seconds(90, 2, None), 10);
        assert_eq!(step_seconds(3, 2, None), 1);
        assert_eq!(step_seconds(60, 5, Some(30)), 20);
    }

    #[test]
    fn plan_skips_when_off_provisioned_or_already_at_the_start() {
        assert_eq!(
            plan(60, 2, Some(10), false),
            Plan::Ramp { original: Some(10) }
        );
        assert_eq!(plan(60, 2, None, false), Plan::Ramp { original: None });
        assert!(matches!(plan(0, 2, None, false), Plan::Skip(r) if r.contains("off")));
        assert!(matches!(plan(60, 2, None, true), Plan::Skip(r) if r.contains("provisioned")));
        assert!(matches!(plan(60, 2, Some(2), false), Plan::Skip(r) if r.contains("already 2")));
        assert!(matches!(plan(60, 8, Some(6), false), Plan::Skip(r) if r.contains("already 6")));
    }

    #[test]
    fn a_step_raises_finishes_reopens_or_keeps_a_changed_cap() {
        let failed = Failing::Records {
            failed: 5,
            received: 10,
        };
        assert_eq!(step(&ramp(Some(10), 2), None, Some(2)), RampStep::Raise(4));
        assert_eq!(step(&ramp(Some(10), 8), None, Some(8)), RampStep::Finish);
        assert_eq!(
            step(&ramp(Some(10), 4), Some(failed), Some(4)),
            RampStep::Reopen { why: failed }
        );
        assert_eq!(
            step(&ramp(Some(10), 4), None, Some(50)),
            RampStep::Changed { now: Some(50) }
        );
        assert_eq!(
            step(&ramp(None, 4), None, None),
            RampStep::Changed { now: None },
            "a cap removed during the ramp is someone's choice too"
        );
        assert_eq!(
            step(&ramp(Some(10), 2), None, Some(4)),
            RampStep::Raise(4),
            "a retried step finds its own raise"
        );
        assert_eq!(
            step(&ramp(Some(10), 8), None, Some(16)),
            RampStep::Changed { now: Some(16) }
        );
    }

    #[test]
    fn only_the_breakers_values_are_given_back() {
        let change = ConcurrencyChange {
            original: Some(10),
            set: 4,
            previous: Some(2),
        };
        assert!(change.is_ours(Some(4)));
        assert!(change.is_ours(Some(2)));
        assert!(!change.is_ours(Some(8)));
        assert!(!change.is_ours(None));
    }

    proptest! {
        /// Walking the ramp from START with a healthy consumer and an untouched mapping
        /// raises through every level, strictly doubling and below the original, then
        /// finishes, in as many steps as there are levels.
        #[test]
        fn a_healthy_ramp_visits_every_level_then_finishes(
            start in 2u32..=100,
            original in proptest::option::of(2u32..=1000),
        ) {
            let all = levels(start, original);
            prop_assume!(!all.is_empty());
            let mut r = Ramp { start, ..ramp(original, start) };
            let mut visited = vec![start];
            loop {
                match step(&r, None, Some(r.level)) {
                    RampStep::Raise(level) => {
                        prop_assert_eq!(level, r.level * 2);
                        prop_assert!(level < original.unwrap_or(CEILING));
                        visited.push(level);
                        r.level = level;
                    }
                    RampStep::Finish => break,
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            prop_assert_eq!(visited, all);
        }

        /// A consumer failing again reopens, whatever the cap.
        #[test]
        fn failing_again_reopens(errors in 1u64..1000, cap in proptest::option::of(2u32..1000)) {
            let r = ramp(Some(100), 8);
            let why = Failing::Errors { errors };
            prop_assert_eq!(step(&r, Some(why), cap), RampStep::Reopen { why });
        }
    }
}
