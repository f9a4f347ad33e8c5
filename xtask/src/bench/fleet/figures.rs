//! The fleet bench's figures, pure: which consumers fail, a failing consumer's timeline
//! from the mapping states seen, a mapping's configuration compared field by field, the
//! messages counted by fingerprint, and the table.

use crate::traffic::Sent;
use aws_sdk_lambda::operation::get_event_source_mapping::GetEventSourceMappingOutput;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// After a heal, how long to wait for the close (or, never opened, for a late open).
const CLOSE_WITHIN: Duration = Duration::from_secs(150);
const LATE_OPEN: Duration = Duration::from_secs(30);

/// The GetEventSourceMapping fields that change without anyone changing the mapping.
pub const VOLATILE: [&str; 1] = ["LastProcessingResult"];

/// When the outages happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub stagger: Duration,
    pub outage: Duration,
}

/// Which consumers fail: `failing` of `consumers`, spread evenly.
pub fn failing_indices(consumers: usize, failing: usize) -> Vec<usize> {
    (0..failing.min(consumers))
        .map(|k| k * consumers / failing.max(1))
        .collect()
}

/// One failing consumer's outage and circuit, as times from the first outage's start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeline {
    pub failed_at: Option<Duration>,
    pub healed_at: Option<Duration>,
    pub opened_at: Option<Duration>,
    pub closed_at: Option<Duration>,
}

impl Timeline {
    /// Takes the mapping's `state` seen at `at`: the first `Disabled` after the outage
    /// started opens, the first `Enabled` after that and after the heal closes.
    pub fn observe(&mut self, state: &str, at: Duration) {
        if self.failed_at.is_some() && self.opened_at.is_none() && state == "Disabled" {
            self.opened_at = Some(at);
        }
        if self.opened_at.is_some()
            && self.healed_at.is_some()
            && self.closed_at.is_none()
            && state == "Enabled"
        {
            self.closed_at = Some(at);
        }
    }

    pub fn to_open(&self) -> Option<Duration> {
        Some(self.opened_at?.saturating_sub(self.failed_at?))
    }

    pub fn to_close(&self) -> Option<Duration> {
        Some(self.closed_at?.saturating_sub(self.healed_at?))
    }

    /// Nothing more to wait for at `at`: closed, or healed long enough ago.
    pub fn done(&self, at: Duration) -> bool {
        let Some(healed) = self.healed_at else {
            return false;
        };
        let since = at.saturating_sub(healed);
        self.closed_at.is_some()
            || (self.opened_at.is_none() && since >= LATE_OPEN)
            || since >= CLOSE_WITHIN
    }
}

/// A mapping's configuration as GetEventSourceMapping answers it, field by field (Debug
/// renderings), without the [`VOLATILE`] fields.
pub type MappingConfig = BTreeMap<&'static str, String>;

pub fn mapping_config(m: &GetEventSourceMappingOutput) -> MappingConfig {
    let fields: [(&'static str, String); 19] = [
        ("UUID", format!("{:?}", m.uuid())),
        ("EventSourceArn", format!("{:?}", m.event_source_arn())),
        ("FunctionArn", format!("{:?}", m.function_arn())),
        ("State", format!("{:?}", m.state())),
        (
            "StateTransitionReason",
            format!("{:?}", m.state_transition_reason()),
        ),
        ("LastModified", format!("{:?}", m.last_modified())),
        ("BatchSize", format!("{:?}", m.batch_size())),
        (
            "MaximumBatchingWindowInSeconds",
            format!("{:?}", m.maximum_batching_window_in_seconds()),
        ),
        (
            "FunctionResponseTypes",
            format!("{:?}", m.function_response_types()),
        ),
        ("ScalingConfig", format!("{:?}", m.scaling_config())),
        ("FilterCriteria", format!("{:?}", m.filter_criteria())),
        ("DestinationConfig", format!("{:?}", m.destination_config())),
        ("KMSKeyArn", format!("{:?}", m.kms_key_arn())),
        ("MetricsConfig", format!("{:?}", m.metrics_config())),
        ("LoggingConfig", format!("{:?}", m.logging_config())),
        (
            "ProvisionedPollerConfig",
            format!("{:?}", m.provisioned_poller_config()),
        ),
        (
            "MaximumRetryAttempts",
            format!("{:?}", m.maximum_retry_attempts()),
        ),
        (
            "EventSourceMappingArn",
            format!("{:?}", m.event_source_mapping_arn()),
        ),
        (
            "ParallelizationFactor",
            format!("{:?}", m.parallelization_factor()),
        ),
    ];
    fields.into_iter().collect()
}

/// The fields that differ between two readings of a mapping.
pub fn changed(before: &MappingConfig, after: &MappingConfig) -> Vec<&'static str> {
    before
        .keys()
        .chain(after.keys())
        .copied()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| before.get(k) != after.get(k))
        .collect()
}

/// A consumer's messages at the end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub sent: usize,
    pub processed: usize,
    pub dead: usize,
    pub lost: usize,
}

/// Counts over content fingerprints (a probe gives back a message about to spend its last
/// receive as a fresh copy, with a new id): processed and dead-lettered count only messages
/// sent; lost is what is in neither.
pub fn counts(sent: &[Sent], processed: &HashSet<String>, dead: &HashSet<String>) -> Counts {
    let ids: HashSet<&str> = sent.iter().map(|s| s.fingerprint.as_str()).collect();
    let is_processed = |id: &str| processed.contains(id);
    let is_dead = |id: &str| dead.contains(id);
    Counts {
        sent: ids.len(),
        processed: ids.iter().filter(|id| is_processed(id)).count(),
        dead: ids.iter().filter(|id| is_dead(id)).count(),
        lost: ids
            .iter()
            .filter(|id| !is_processed(id) && !is_dead(id))
            .count(),
    }
}

/// What the run measured about one consumer.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub name: String,
    pub timeline: Option<Timeline>,
    pub counts: Counts,
    /// Fields of the mapping that changed (the healthy ones; failing ones: `None`).
    pub changed: Option<Vec<&'static str>>,
    pub executions: usize,
    /// Of those, the ones that opened a circuit (entered `WaitBeforeProbe`); the others
    /// stood aside (an alarm's echo of the outage after the close).
    pub opened: usize,
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("never".into(), |d| format!("{:.0} s", d.as_secs_f64()))
}

/// The table, one row per consumer.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| consumer | outage (from the first's start) | open after | closed after heal | sent | processed | lost | in DLQ | mapping | executions naming it (opening a circuit) |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n",
    );
    for r in rows {
        let (outage, open, close) = match r.timeline {
            Some(t) => (
                format!(
                    "{} to {}",
                    secs(t.failed_at).trim_end_matches(" s"),
                    secs(t.healed_at)
                ),
                secs(t.to_open()),
                secs(t.to_close()),
            ),
            None => ("healthy".into(), "".into(), "".into()),
        };
        let mapping = match &r.changed {
            None => "disabled, enabled".to_string(),
            Some(c) if c.is_empty() => "unchanged".to_string(),
            Some(c) => format!("changed: {}", c.join(", ")),
        };
        let c = r.counts;
        out.push_str(&format!(
            "| {} | {outage} | {open} | {close} | {} | {} | {} | {} | {mapping} | {} ({}) |\n",
            r.name, c.sent, c.processed, c.lost, c.dead, r.executions, r.opened
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_failing_consumers_are_spread_over_the_fleet() {
        assert_eq!(failing_indices(20, 3), vec![0, 6, 13]);
        assert_eq!(failing_indices(3, 3), vec![0, 1, 2]);
        assert_eq!(failing_indices(5, 0), Vec::<usize>::new());
    }

    #[test]
    fn a_timeline_opens_on_disabled_after_the_outage_and_closes_on_enabled_after_the_heal() {
        let mut t = Timeline::default();
        t.observe("Disabled", S(1));
        assert_eq!(t.opened_at, None, "before the outage nothing opens");
        t.failed_at = Some(S(2));
        t.observe("Enabled", S(5));
        t.observe("Disabled", S(20));
        t.observe("Disabled", S(21));
        assert_eq!(t.to_open(), Some(S(18)));
        t.observe("Enabled", S(30));
        assert_eq!(
            t.closed_at, None,
            "not healed yet: a re-enable is not the close"
        );
        t.healed_at = Some(S(62));
        assert!(!t.done(S(63)));
        t.observe("Enabling", S(64));
        t.observe("Enabled", S(70));
        assert_eq!(t.to_close(), Some(S(8)));
        assert!(t.done(S(70)));
    }

    #[test]
    fn a_timeline_that_never_opened_is_done_soon_after_the_heal() {
        let t = Timeline {
            failed_at: Some(S(0)),
            healed_at: Some(S(60)),
            ..Timeline::default()
        };
        assert!(!t.done(S(60)));
        assert!(t.done(S(60) + LATE_OPEN));
        assert_eq!(t.to_open(), None);
    }

    #[test]
    fn only_the_fields_that_differ_are_changed() {
        let before: MappingConfig = [("State", "Enabled".into()), ("BatchSize", "10".into())]
            .into_iter()
            .collect();
        let mut after = before.clone();
        assert!(changed(&before, &after).is_empty());
        after.insert("BatchSize", "5".into());
        after.insert("ScalingConfig", "Some(..)".into());
        assert_eq!(changed(&before, &after), vec!["BatchSize", "ScalingConfig"]);
    }

    #[test]
    fn the_volatile_field_is_not_compared() {
        let m = |result: &str| {
            GetEventSourceMappingOutput::builder()
                .uuid("u")
                .state("Enabled")
                .batch_size(10)
                .last_processing_result(result)
                .build()
        };
        let (a, b) = (
            mapping_config(&m("OK")),
            mapping_config(&m("No records processed")),
        );
        assert!(changed(&a, &b).is_empty());
        let disabled = GetEventSourceMappingOutput::builder()
            .uuid("u")
            .state("Disabled")
            .batch_size(10)
            .build();
        assert_eq!(changed(&a, &mapping_config(&disabled)), vec!["State"]);
    }

    #[test]
    fn lost_is_what_was_neither_processed_nor_dead_lettered() {
        let sent: Vec<Sent> = ["a", "b", "c", "d"]
            .iter()
            .map(|fp| Sent {
                message_id: String::new(),
                fingerprint: fp.to_string(),
            })
            .collect();
        let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
        let c = counts(&sent, &set(&["a", "b", "zz"]), &set(&["c"]));
        assert_eq!(
            c,
            Counts {
                sent: 4,
                processed: 2,
                dead: 1,
                lost: 1
            }
        );
    }

    #[test]
    fn the_table_shows_a_failing_and_a_healthy_consumer() {
        let rows = [
            Row {
                name: "fleet-00".into(),
                timeline: Some(Timeline {
                    failed_at: Some(S(0)),
                    healed_at: Some(S(60)),
                    opened_at: Some(S(25)),
                    closed_at: Some(S(66)),
                }),
                counts: Counts {
                    sent: 90,
                    processed: 88,
                    dead: 2,
                    lost: 0,
                },
                changed: None,
                executions: 2,
                opened: 1,
            },
            Row {
                name: "fleet-01".into(),
                changed: Some(vec![]),
                ..Row::default()
            },
        ];
        let t = table(&rows);
        assert!(
            t.contains("| fleet-00 | 0 to 60 s | 25 s | 6 s | 90 | 88 | 0 | 2 | disabled, enabled | 2 (1) |"),
            "{t}"
        );
        assert!(
            t.contains("| fleet-01 | healthy |  |  | 0 | 0 | 0 | 0 | unchanged | 0 (0) |"),
            "{t}"
        );
    }
}
