//! Spies: rules that log what a step calls, in order, and answer nothing.
use super::*;

// ---------------------------------------------------------------------------------------------
// Spies

/// What the spies saw, in order.
pub type Log = Arc<Mutex<Vec<String>>>;

/// What an UpdateItem does, by its expressions.
fn update_item_kind(r: &UpdateItemInput) -> String {
    let expression = r.update_expression().unwrap_or_default();
    let condition = r.condition_expression().unwrap_or_default();
    if condition.starts_with("attribute_not_exists") {
        "acquire".into()
    } else if condition.contains(":dead") {
        "take_over".into()
    } else if expression.contains("last_probe") {
        "record_probe".into()
    } else if expression.contains("trips :minus_one") {
        "release".into()
    } else {
        format!("finish {}", value(r, ":state").unwrap_or_default())
    }
}

impl Mocks {
    /// Puts rules in front of every client's that record each mutating call (and each read
    /// of the consumer's mapping) in the log and match none, so they see every request before
    /// the rule that answers it.
    pub fn spied(mut self) -> (Mocks, Log) {
        let log: Log = Arc::new(Mutex::new(Vec::new()));
        let spy = |log: &Log| {
            let log = log.clone();
            move |entry: String| {
                log.lock().unwrap().push(entry);
                false
            }
        };
        let (l1, l2, l3, l4, l5, l6, l7) = (
            spy(&log),
            spy(&log),
            spy(&log),
            spy(&log),
            spy(&log),
            spy(&log),
            spy(&log),
        );
        let front = |rule: Rule, rest: &mut Vec<Rule>| rest.insert(0, rule);
        front(
            mock!(aws_sdk_lambda::Client::update_event_source_mapping)
                .match_requests(move |r| {
                    l1(format!(
                        "UpdateEventSourceMapping {} enabled={:?}",
                        r.uuid().unwrap_or_default(),
                        r.enabled()
                    ))
                })
                .then_output(|| unreachable!("a spy matches nothing")),
            &mut self.lambda,
        );
        front(
            mock!(aws_sdk_lambda::Client::get_event_source_mapping)
                .match_requests(move |r| {
                    l2(format!(
                        "GetEventSourceMapping {}",
                        r.uuid().unwrap_or_default()
                    ))
                })
                .then_output(|| unreachable!("a spy matches nothing")),
            &mut self.lambda,
        );
        front(
            mock!(aws_sdk_lambda::Client::invoke)
                .match_requests(move |r| {
                    l3(format!("Invoke {}", r.function_name().unwrap_or_default()))
                })
                .then_output(|| unreachable!("a spy matches nothing")),
            &mut self.lambda,
        );
        front(
            mock!(aws_sdk_dynamodb::Client::update_item)
                .match_requests(move |r| l4(format!("UpdateItem {}", update_item_kind(r))))
                .then_output(|| unreachable!("a spy matches nothing")),
            &mut self.dynamodb,
        );
        front(
            mock!(aws_sdk_cloudwatch::Client::set_alarm_state)
                .match_requests(move |r| {
                    l5(format!(
                        "SetAlarmState {}",
                        r.state_value().map(|s| s.as_str()).unwrap_or_default()
                    ))
                })
                .then_output(|| unreachable!("a spy matches nothing")),
            &mut self.cloudwatch,
        );
        front(
            mock!(aws_sdk_eventbridge::Client::put_events)
                .match_requests(move |r| {
                    l6(format!(
                        "PutEvents {}",
                        r.entries()
                            .iter()
                            .filter_map(|e| e.detail_type())
                            .collect::<Vec<_>>()
                            .join(",")
                    ))
                })
                .then_output(|| unreachable!("a spy matches nothing")),
            &mut self.eventbridge,
        );
        front(
            mock!(aws_sdk_sqs::Client::receive_message)
                .match_requests(move |_| l7("ReceiveMessage".into()))
                .then_output(|| unreachable!("a spy matches nothing")),
            &mut self.sqs,
        );
        (self, log)
    }
}

/// The log's entries that start with one of `prefixes`, in order.
pub fn entries(log: &Log, prefixes: &[&str]) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|e| prefixes.iter().any(|p| e.starts_with(p)))
        .cloned()
        .collect()
}
