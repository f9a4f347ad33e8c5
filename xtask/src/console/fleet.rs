//! The console's fleet list: one row per consumer the breaker guards, as the operator
//! command's `status` reads them (`sqs_circuit_breaker::status::fleet`), mapped by a pure
//! function to what the page shows; and which consumer an execution is for, by the operator's
//! rule (`sqs_circuit_breaker::fleet::consumer_of`).

use controller::adapters::queue::Depth;
use controller::core::operator::Phase;
use serde::Serialize;
use serde_json::Value;
use sqs_circuit_breaker::fleet;
use sqs_circuit_breaker::status::Row;

/// One guarded consumer, as the fleet list shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConsumerRow {
    /// The attachment's id, or `built-in`, as the operator command names them.
    pub id: String,
    pub function: String,
    /// The queue's name (its ARN's last part).
    pub queue: String,
    /// The circuit's phase as `status` shows it (`CLOSED`, `OPEN`, `HELD_OPEN`, `HALF_OPEN`,
    /// `GAVE_UP`), or `?` when the consumer could not be read.
    pub circuit: String,
    pub circuit_reason: String,
    /// Not closed: the row stands out.
    pub open: bool,
    pub alarm: Option<String>,
    pub depth: Option<Depth>,
    /// What could not be read or used, if anything.
    pub problem: Option<String>,
}

/// The row the page shows for one of `status`'s rows.
pub fn row(read: &Row) -> ConsumerRow {
    let status = read.status.as_ref();
    // Without a mapping the circuit has no item: `status` says why in the mapping's state.
    let no_mapping = status
        .filter(|s| s.mapping_id.is_none())
        .map(|s| s.mapping_state.clone());
    let problems: Vec<String> = read.error.iter().cloned().chain(no_mapping).collect();
    ConsumerRow {
        id: read.id.clone(),
        function: read.function.clone(),
        queue: read
            .queue_arn
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_string(),
        circuit: status.map_or("?", |s| s.phase.as_str()).to_string(),
        circuit_reason: status.and_then(|s| s.reason.clone()).unwrap_or_default(),
        open: status.is_some_and(|s| s.phase != Phase::Closed),
        alarm: status.and_then(|s| s.alarm_state.clone()),
        depth: status.map(|s| s.queue),
        problem: (!problems.is_empty()).then(|| problems.join("; ")),
    }
}

/// The consumer an execution is for, from the input it was started with (`None`: no input
/// recorded), read as the operator's `history --consumer` reads it: an input that is not JSON
/// is the built-in consumer's; one no controller would route is nobody's (`None`).
pub fn consumer_of(input: Option<&str>) -> Option<String> {
    let input = input
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null);
    fleet::consumer_of(&input).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use controller::adapters::queue::Depth;
    use controller::core::operator::Phase;
    use sqs_circuit_breaker::fleet::BUILT_IN;
    use sqs_circuit_breaker::status::Status;

    const DEPTH: Depth = Depth {
        visible: 12,
        in_flight: 1,
        delayed: 0,
    };

    fn status(phase: Phase, reason: Option<&str>) -> Status {
        Status {
            phase,
            since_ms: Some(1_000),
            reason: reason.map(str::to_string),
            owner: None,
            owner_console_url: None,
            current_state: None,
            probes: None,
            last_probe: None,
            next_probe_ms: None,
            mapping_id: Some("uuid-1".into()),
            mapping_state: "Disabled".into(),
            mapping_maximum_concurrency: None,
            alarm_name: "orders-failing".into(),
            alarm_state: Some("ALARM".into()),
            alarm_kind: Some("metric".into()),
            alarm_signal: "errors".into(),
            alarm_note: None,
            queue: DEPTH,
            dead_letter_queue: None,
        }
    }

    fn read(id: &str, status: Option<Status>, error: Option<&str>) -> Row {
        Row {
            id: id.into(),
            function: format!("{id}-consumer"),
            queue_arn: format!("arn:aws:sqs:us-east-1:123456789012:{id}"),
            status,
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn a_row_shows_the_operators_phase_alarm_and_depth_and_an_open_circuit_stands_out() {
        let open = row(&read(
            "orders",
            Some(status(Phase::Open, Some("alarm orders-failing"))),
            None,
        ));
        assert_eq!(
            (
                open.id.as_str(),
                open.function.as_str(),
                open.queue.as_str()
            ),
            ("orders", "orders-consumer", "orders")
        );
        assert_eq!(
            (open.circuit.as_str(), open.open),
            ("OPEN", true),
            "{open:?}"
        );
        assert_eq!(open.circuit_reason, "alarm orders-failing");
        assert_eq!(open.alarm.as_deref(), Some("ALARM"));
        assert_eq!(open.depth, Some(DEPTH));
        assert_eq!(open.problem, None);
        // Every phase the operator tells apart, as it names it; all but closed stand out.
        for (phase, shown) in [
            (Phase::HeldOpen, "HELD_OPEN"),
            (Phase::HalfOpen, "HALF_OPEN"),
            (Phase::GaveUp, "GAVE_UP"),
        ] {
            let r = row(&read("orders", Some(status(phase, None)), None));
            assert_eq!((r.circuit.as_str(), r.open), (shown, true), "{r:?}");
        }
        let closed = row(&read(BUILT_IN, Some(status(Phase::Closed, None)), None));
        assert_eq!(
            (closed.id.as_str(), closed.circuit.as_str(), closed.open),
            (BUILT_IN, "CLOSED", false)
        );
    }

    #[test]
    fn a_consumer_that_cannot_be_read_is_listed_with_why() {
        let unreadable = row(&read("orders", None, Some("GetQueueUrl: no such queue")));
        assert_eq!((unreadable.circuit.as_str(), unreadable.open), ("?", false));
        assert_eq!((unreadable.alarm.clone(), unreadable.depth), (None, None));
        assert_eq!(
            unreadable.problem.as_deref(),
            Some("GetQueueUrl: no such queue")
        );
        // An unusable item: no function or queue to show.
        let unusable = row(&Row {
            function: String::new(),
            queue_arn: String::new(),
            ..read("orders", None, Some("BackoffCapSeconds: not a number"))
        });
        assert_eq!(
            (unusable.function.as_str(), unusable.queue.as_str()),
            ("", "")
        );
        assert_eq!(
            unusable.problem.as_deref(),
            Some("BackoffCapSeconds: not a number")
        );
    }

    #[test]
    fn a_consumer_without_its_mapping_shows_the_rest_and_says_why() {
        let mut unmapped = status(Phase::Closed, None);
        unmapped.mapping_id = None;
        unmapped.mapping_state = "no mapping from orders to orders-consumer".into();
        let shown = row(&read("orders", Some(unmapped), None));
        assert_eq!((shown.circuit.as_str(), shown.open), ("CLOSED", false));
        assert_eq!(
            (shown.alarm.as_deref(), shown.depth),
            (Some("ALARM"), Some(DEPTH))
        );
        assert_eq!(
            shown.problem.as_deref(),
            Some("no mapping from orders to orders-consumer")
        );
    }

    #[test]
    fn an_execution_is_for_the_consumer_the_operator_reads_from_its_input() {
        let of = |input: &str| consumer_of(Some(input));
        let event = r#"{"source": "aws.cloudwatch", "detail": {"alarmName": "a"}}"#;
        assert_eq!(of(event).as_deref(), Some(BUILT_IN));
        assert_eq!(
            of(r#"{"operator": {"by": "ops"}}"#).as_deref(),
            Some(BUILT_IN)
        );
        assert_eq!(
            of(&format!(r#"{{"attachment": "orders", "event": {event}}}"#)).as_deref(),
            Some("orders")
        );
        // No controller routes these: nobody's, as `history --consumer` reads them.
        assert_eq!(of(r#"{"attachment": "orders"}"#), None);
        assert_eq!(of(r#"{"attachment": 7, "event": {}}"#), None);
        assert_eq!(of("not json").as_deref(), Some(BUILT_IN));
        assert_eq!(consumer_of(None).as_deref(), Some(BUILT_IN));
    }
}
