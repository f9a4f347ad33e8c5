//! The console's fleet list: one row per consumer the breaker guards (its built-in consumer
//! and each attachment), with its circuit, alarm and queue depth; and which consumer an
//! execution is for, from its input. The rows are made from what was read by pure functions;
//! [`read`] is the thin reader over the controller's adapters.

use controller::adapters::queue::{self, Depth};
use controller::adapters::store::CircuitRecord;
use controller::adapters::{alarm, mapping};
use controller::circuit::CircuitAttachment;
use controller::core::attachment::{route, Defaults, Target};
use controller::core::operator::Phase;
use controller::core::{Config, QueueArn};
use controller::steps::Context;
use serde::Serialize;
use serde_json::Value;

/// One guarded consumer, as the fleet list shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConsumerRow {
    /// The attachment's id; the built-in consumer's is the breaker's stack name (no
    /// attachment can have it: attachment ids are stack names too).
    pub id: String,
    pub builtin: bool,
    pub function: String,
    /// The queue's name (its ARN's last part).
    pub queue: String,
    /// `CLOSED`, `OPEN`, `GAVE_UP` (the circuit item's state), or `?` when unread.
    pub circuit: String,
    pub circuit_reason: String,
    /// Not closed: the row stands out.
    pub open: bool,
    pub alarm: Option<String>,
    pub depth: Option<Depth>,
    /// What could not be read or used, if anything.
    pub problem: Option<String>,
}

/// A consumer to read: what its configuration names.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumer {
    pub id: String,
    pub builtin: bool,
    pub function: String,
    pub queue_arn: String,
    pub alarm_name: String,
    /// Why its settings cannot be used (nothing is read for it then).
    pub problem: Option<String>,
}

/// What was read of one consumer; each part fails on its own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// Its mapping's circuit item (`None`: no circuit yet).
    pub circuit: Option<Result<Option<CircuitRecord>, String>>,
    pub alarm: Option<Result<Option<String>, String>>,
    pub depth: Option<Result<Depth, String>>,
}

/// The consumers of a deployment: the built-in one (`builtin`, named `stack`), then each
/// attachment, its settings over the deployment's `defaults`, in id order.
pub fn consumers(
    stack: &str,
    builtin: Option<&Config>,
    defaults: &Defaults,
    attachments: &[CircuitAttachment],
) -> Vec<Consumer> {
    let mut attached: Vec<Consumer> = attachments
        .iter()
        .map(|a| match Config::for_attachment(defaults, &a.settings) {
            Ok(valid) => consumer(&a.id, false, &valid.config),
            Err(e) => Consumer {
                id: a.id.clone(),
                builtin: false,
                function: text(&a.settings, "ConsumerFunctionName"),
                queue_arn: text(&a.settings, "QueueArn"),
                alarm_name: text(&a.settings, "AlarmName"),
                problem: Some(e.to_string()),
            },
        })
        .collect();
    attached.sort_by(|a, b| a.id.cmp(&b.id));
    builtin
        .map(|config| consumer(stack, true, config))
        .into_iter()
        .chain(attached)
        .collect()
}

fn consumer(id: &str, builtin: bool, config: &Config) -> Consumer {
    Consumer {
        id: id.to_string(),
        builtin,
        function: config.consumer_function.clone(),
        queue_arn: config.queue_arn.clone(),
        alarm_name: config.alarm_name.clone(),
        problem: None,
    }
}

fn text(settings: &Value, key: &str) -> String {
    settings[key].as_str().unwrap_or_default().to_string()
}

/// The row of `consumer`, from what was read of it.
pub fn row(consumer: &Consumer, reading: &Reading) -> ConsumerRow {
    let mut problems: Vec<String> = consumer.problem.iter().cloned().collect();
    let record = part(&reading.circuit, &mut problems).map(Option::as_ref);
    let alarm = part(&reading.alarm, &mut problems).cloned().flatten();
    let depth = part(&reading.depth, &mut problems).copied();
    let (circuit, reason) = match record {
        Some(found) => (
            Phase::of(found.map(|r| r.state.as_str()), None)
                .as_str()
                .to_string(),
            found.map(|r| r.reason.clone()).unwrap_or_default(),
        ),
        None => ("?".to_string(), String::new()),
    };
    ConsumerRow {
        id: consumer.id.clone(),
        builtin: consumer.builtin,
        function: consumer.function.clone(),
        queue: consumer
            .queue_arn
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_string(),
        open: circuit != Phase::Closed.as_str() && circuit != "?",
        circuit,
        circuit_reason: reason,
        alarm,
        depth,
        problem: (!problems.is_empty()).then(|| problems.join("; ")),
    }
}

/// A part that was read, or none, adding why it could not be to `problems`.
fn part<'a, T>(read: &'a Option<Result<T, String>>, problems: &mut Vec<String>) -> Option<&'a T> {
    match read {
        Some(Ok(value)) => Some(value),
        Some(Err(e)) => {
            problems.push(e.clone());
            None
        }
        None => None,
    }
}

/// The consumer an execution's input is for: the attachment it names (as written, even when
/// the controller refuses it: the execution still tried that consumer), else the built-in
/// consumer's id `builtin` (the bare alarm event, `{"operator": …}`, or an input that is not
/// JSON).
pub fn consumer_of(input: Option<&str>, builtin: &str) -> String {
    let Some(input) = input.and_then(|i| serde_json::from_str::<Value>(i).ok()) else {
        return builtin.to_string();
    };
    match route(&input) {
        Ok(routed) => match routed.target {
            Target::BuiltIn => builtin.to_string(),
            Target::Attachment(id) => id.to_string(),
        },
        Err(_) => match &input["attachment"] {
            Value::String(id) => id.clone(),
            other => other.to_string(),
        },
    }
}

/// Reads each consumer of the breaker `ctx` (the stack `stack`): the attachments table (when
/// the deployment has one), then per consumer its mapping's circuit item, its alarm and its
/// queue's depth. Only a failed read of the attachments table fails the whole list.
pub async fn read(ctx: &Context, stack: &str) -> Result<Vec<ConsumerRow>, String> {
    let attachments = match &ctx.fleet.attachments {
        Some(table) => table
            .list()
            .await
            .map_err(|e| format!("reading the attachments table {}: {e}", table.table))?,
        None => Vec::new(),
    };
    let builtin = (!ctx.fleet.fleet_only).then_some(&ctx.config);
    let mut rows = Vec::new();
    for consumer in consumers(stack, builtin, &ctx.fleet.defaults, &attachments) {
        let reading = if consumer.problem.is_some() {
            Reading::default()
        } else {
            read_one(ctx, &consumer).await
        };
        rows.push(row(&consumer, &reading));
    }
    Ok(rows)
}

async fn read_one(ctx: &Context, consumer: &Consumer) -> Reading {
    let clients = &ctx.clients;
    let circuit = async {
        let found = mapping::find(&clients.lambda, &consumer.queue_arn, &consumer.function).await?;
        ctx.store().get(&found.uuid).await
    };
    let depth = async {
        let arn = QueueArn::parse(&consumer.queue_arn).map_err(|e| e.to_string())?;
        let url = queue::url(&clients.sqs, &arn.name, &arn.account)
            .await
            .map_err(|e| e.to_string())?;
        queue::depth(&clients.sqs, &url)
            .await
            .map(|(depth, _)| depth)
            .map_err(|e| e.to_string())
    };
    let alarm = alarm::state(&clients.cloudwatch, &consumer.alarm_name);
    let (circuit, depth, alarm) = tokio::join!(circuit, depth, alarm);
    Reading {
        circuit: Some(circuit.map_err(|e| e.to_string())),
        alarm: Some(alarm.map(|a| a.map(|a| a.value)).map_err(|e| e.to_string())),
        depth: Some(depth),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defaults() -> Defaults {
        let env = [
            ("STATE_MACHINE_NAME", "breaker"),
            ("CIRCUIT_TABLE", "breaker-circuits"),
            ("EVENT_BUS_NAME", "default"),
        ];
        Defaults::from_lookup(|name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    fn attachment(id: &str, function: &str, queue: &str) -> CircuitAttachment {
        CircuitAttachment {
            id: id.into(),
            settings: json!({
                "Id": id,
                "ConsumerFunctionName": function,
                "QueueArn": format!("arn:aws:sqs:us-east-1:123456789012:{queue}"),
                "AlarmName": format!("{queue}-failing"),
            }),
            role_arn: None,
        }
    }

    fn builtin() -> Config {
        let env = [
            ("STATE_MACHINE_NAME", "breaker"),
            ("CIRCUIT_TABLE", "breaker-circuits"),
            ("EVENT_BUS_NAME", "default"),
            ("CONSUMER_FUNCTION_NAME", "payments-consumer"),
            ("QUEUE_ARN", "arn:aws:sqs:us-east-1:123456789012:payments"),
            ("ALARM_NAME", "payments-failing"),
        ];
        Config::from_lookup(|name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .expect("a valid configuration")
    }

    fn record(state: &str, reason: &str) -> CircuitRecord {
        CircuitRecord {
            state: state.into(),
            reason: reason.into(),
            ..CircuitRecord::default()
        }
    }

    #[test]
    fn the_built_in_consumer_comes_first_then_attachments_by_id() {
        let attached = [
            attachment("orders", "orders-consumer", "orders"),
            attachment("billing", "billing-consumer", "billing"),
        ];
        let all = consumers("team-breaker", Some(&builtin()), &defaults(), &attached);
        let ids: Vec<(&str, bool)> = all.iter().map(|c| (c.id.as_str(), c.builtin)).collect();
        assert_eq!(
            ids,
            [
                ("team-breaker", true),
                ("billing", false),
                ("orders", false)
            ]
        );
        assert_eq!(all[2].function, "orders-consumer");
        assert_eq!(all[2].alarm_name, "orders-failing");
        assert!(all.iter().all(|c| c.problem.is_none()), "{all:?}");
        // A fleet-only deployment lists its attachments only.
        let fleet_only = consumers("team-breaker", None, &defaults(), &attached);
        assert_eq!(fleet_only.len(), 2);
    }

    #[test]
    fn an_attachment_whose_settings_are_refused_is_listed_with_the_reason() {
        let mut broken = attachment("orders", "orders-consumer", "orders");
        broken.settings["BackoffCapSeconds"] = json!("soon");
        let all = consumers("team-breaker", None, &defaults(), &[broken]);
        assert_eq!(all[0].function, "orders-consumer");
        let problem = all[0].problem.as_deref().unwrap_or_default();
        assert!(problem.contains("BackoffCapSeconds"), "{problem}");
        let shown = row(&all[0], &Reading::default());
        assert_eq!(shown.circuit, "?");
        assert!(!shown.open);
        assert_eq!(shown.problem.as_deref(), Some(problem));
    }

    #[test]
    fn a_row_shows_the_circuit_alarm_and_depth_and_an_open_circuit_stands_out() {
        let consumer = consumers(
            "team-breaker",
            None,
            &defaults(),
            &[attachment("orders", "orders-consumer", "orders")],
        )
        .remove(0);
        let depth = Depth {
            visible: 12,
            in_flight: 1,
            delayed: 0,
        };
        let reading = |state: Option<&str>| Reading {
            circuit: Some(Ok(state.map(|s| record(s, "alarm orders-failing")))),
            alarm: Some(Ok(Some("ALARM".into()))),
            depth: Some(Ok(depth)),
        };
        let open = row(&consumer, &reading(Some("OPEN")));
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
        assert_eq!(open.depth, Some(depth));
        assert_eq!(open.problem, None);
        let gave_up = row(&consumer, &reading(Some("GAVE_UP")));
        assert!(gave_up.open, "{gave_up:?}");
        for closed in [
            row(&consumer, &reading(Some("CLOSED"))),
            row(&consumer, &reading(None)),
        ] {
            assert_eq!((closed.circuit.as_str(), closed.open), ("CLOSED", false));
        }
    }

    #[test]
    fn a_part_that_cannot_be_read_leaves_the_rest_of_the_row() {
        let consumer = consumers("team-breaker", Some(&builtin()), &defaults(), &[]).remove(0);
        let reading = Reading {
            circuit: Some(Err("no mapping from payments to payments-consumer".into())),
            alarm: Some(Ok(None)),
            depth: Some(Err("GetQueueUrl: no such queue".into())),
        };
        let shown = row(&consumer, &reading);
        assert_eq!((shown.id.as_str(), shown.builtin), ("team-breaker", true));
        assert_eq!((shown.circuit.as_str(), shown.open), ("?", false));
        assert_eq!((shown.alarm.clone(), shown.depth), (None, None));
        assert_eq!(
            shown.problem.as_deref(),
            Some("no mapping from payments to payments-consumer; GetQueueUrl: no such queue")
        );
    }

    #[test]
    fn an_execution_is_for_the_attachment_its_input_names_else_the_built_in_consumer() {
        let of = |input: &str| consumer_of(Some(input), "team-breaker");
        let event = r#"{"source": "aws.cloudwatch", "detail": {"alarmName": "a"}}"#;
        assert_eq!(of(event), "team-breaker");
        assert_eq!(of(r#"{"operator": {"by": "ops"}}"#), "team-breaker");
        assert_eq!(
            of(&format!(r#"{{"attachment": "orders", "event": {event}}}"#)),
            "orders"
        );
        // Refused by the controller, yet it was for that attachment.
        assert_eq!(of(r#"{"attachment": "orders"}"#), "orders");
        assert_eq!(of(r#"{"attachment": 7, "event": {}}"#), "7");
        assert_eq!(of("not json"), "team-breaker");
        assert_eq!(consumer_of(None, "team-breaker"), "team-breaker");
    }
}
