//! DynamoDB and Step Functions rules: the circuit item and the executions.
use super::*;
pub use controller::adapters::store::recovery_owner;

// ---------------------------------------------------------------------------------------------
// Step Functions

/// DescribeExecution of `execution`, answering `status`.
pub fn describe_execution(execution: &'static str, status: ExecutionStatus) -> Rule {
    use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
    mock!(aws_sdk_sfn::Client::describe_execution)
        .match_requests(move |r| r.execution_arn() == Some(execution))
        .then_output(move || {
            DescribeExecutionOutput::builder()
                .execution_arn(execution)
                .state_machine_arn(
                    "arn:aws:states:us-east-1:123456789012:stateMachine:orders-breaker",
                )
                .status(status.clone())
                .start_date(aws_smithy_types::DateTime::from_millis(
                    (NOW_MS - 3_600_000) as i64,
                ))
                .build()
                .expect("all required fields")
        })
}

/// DescribeExecution of `execution` answering the statuses in turn, the last one from then on
/// (an execution stopped while a step runs).
pub fn describe_execution_turns(execution: &'static str, statuses: &[ExecutionStatus]) -> Rule {
    use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
    let mut sequence = mock!(aws_sdk_sfn::Client::describe_execution)
        .match_requests(move |r| r.execution_arn() == Some(execution))
        .sequence();
    for status in statuses {
        let status = status.clone();
        sequence = sequence.output(move || {
            DescribeExecutionOutput::builder()
                .execution_arn(execution)
                .state_machine_arn(
                    "arn:aws:states:us-east-1:123456789012:stateMachine:orders-breaker",
                )
                .status(status.clone())
                .start_date(aws_smithy_types::DateTime::from_millis(
                    (NOW_MS - 3_600_000) as i64,
                ))
                .build()
                .expect("all required fields")
        });
    }
    sequence.repeatedly().build()
}

/// DescribeExecution of an execution Step Functions no longer knows (its history expired).
pub fn execution_does_not_exist(execution: &'static str) -> Rule {
    use aws_sdk_sfn::operation::describe_execution::DescribeExecutionError;
    use aws_sdk_sfn::types::error::ExecutionDoesNotExist;
    mock!(aws_sdk_sfn::Client::describe_execution)
        .match_requests(move |r| r.execution_arn() == Some(execution))
        .then_error(|| {
            DescribeExecutionError::ExecutionDoesNotExist(
                ExecutionDoesNotExist::builder()
                    .message("Execution Does Not Exist")
                    .meta(
                        aws_sdk_sfn::error::ErrorMetadata::builder()
                            .code("ExecutionDoesNotExist")
                            .build(),
                    )
                    .build(),
            )
        })
}

// ---------------------------------------------------------------------------------------------
// DynamoDB

/// The circuit item as a test stores it.
#[derive(Debug, Clone)]
pub struct Item {
    pub mapping_id: String,
    pub state: String,
    pub owner: String,
    pub since_ms: u64,
    pub trips: u64,
    pub snapshot: Option<MappingSnapshot>,
    pub recent_opens: Vec<u64>,
}

/// The item of `UUID` in `state` held by `owner`, a minute old, with the snapshot the breaker
/// took of the Enabled mapping, and no other opening in the last hour.
pub fn item(state: &str, owner: &str) -> Item {
    Item {
        mapping_id: UUID.into(),
        state: state.into(),
        owner: owner.into(),
        since_ms: NOW_MS - 60_000,
        trips: 3,
        snapshot: Some(snapshot("Enabled")),
        recent_opens: vec![],
    }
}

impl Item {
    pub fn attributes(&self) -> HashMap<String, AttributeValue> {
        let opens: Vec<String> = self.recent_opens.iter().map(u64::to_string).collect();
        let mut item = HashMap::from([
            (
                "mapping_id".to_string(),
                AttributeValue::S(self.mapping_id.clone()),
            ),
            ("state".to_string(), AttributeValue::S(self.state.clone())),
            ("owner".to_string(), AttributeValue::S(self.owner.clone())),
            (
                "since_ms".to_string(),
                AttributeValue::N(self.since_ms.to_string()),
            ),
            (
                "trips".to_string(),
                AttributeValue::N(self.trips.to_string()),
            ),
            ("reason".to_string(), AttributeValue::S("a test".into())),
            (
                "recent_opens".to_string(),
                AttributeValue::S(opens.join(",")),
            ),
        ]);
        if let Some(stored) = &self.snapshot {
            item.insert(
                "mapping_snapshot".into(),
                AttributeValue::S(serde_json::to_string(stored).unwrap()),
            );
        }
        item
    }
}

pub(super) fn value(r: &UpdateItemInput, name: &str) -> Option<String> {
    match r.expression_attribute_values()?.get(name)? {
        AttributeValue::S(s) => Some(s.clone()),
        AttributeValue::N(n) => Some(n.clone()),
        _ => None,
    }
}

fn names(r: &UpdateItemInput, name: &str) -> Option<String> {
    r.expression_attribute_names()?.get(name).cloned()
}

fn is_our_item(r: &UpdateItemInput) -> bool {
    r.table_name() == Some(TABLE)
        && r.key().and_then(|k| k.get("mapping_id")) == Some(&AttributeValue::S(UUID.into()))
}

/// The acquire: OPEN, owned by this execution, only if closed or new; the snapshot, the
/// reason and the openings of the last hour stored.
fn is_acquire(r: &UpdateItemInput) -> bool {
    let stored: Option<MappingSnapshot> =
        value(r, ":snapshot").and_then(|s| serde_json::from_str(&s).ok());
    is_our_item(r)
        && r.update_expression()
            == Some(
                "SET #state = :open, #owner = :me, since_ms = :now, mapping_snapshot = :snapshot, \
                 reason = :reason, recent_opens = :opens ADD trips :one",
            )
        && r.condition_expression() == Some("attribute_not_exists(mapping_id) OR #state = :closed")
        && value(r, ":open").as_deref() == Some("OPEN")
        && value(r, ":closed").as_deref() == Some("CLOSED")
        && value(r, ":me").as_deref() == Some(EXECUTION)
        && value(r, ":now") == Some(NOW_MS.to_string())
        // Opened by the alarm, or by an operator's request.
        && value(r, ":reason").is_some_and(|s| s.contains(ALARM) || s.starts_with("opened by hand: "))
        && names(r, "#state").as_deref() == Some("state")
        && names(r, "#owner").as_deref() == Some("owner")
        && stored.is_some_and(|s| s.uuid == UUID)
}

/// An update made only while this execution owns the OPEN item.
fn is_owned_update(r: &UpdateItemInput) -> bool {
    is_updated_by(r, EXECUTION)
}

fn is_updated_by(r: &UpdateItemInput, owner: &str) -> bool {
    is_our_item(r)
        && r.condition_expression() == Some("#owner = :me AND #state = :open")
        && value(r, ":me").as_deref() == Some(owner)
        && value(r, ":open").as_deref() == Some("OPEN")
        && names(r, "#owner").as_deref() == Some("owner")
        && names(r, "#state").as_deref() == Some("state")
}

/// The acquire of a closed (or new) circuit, recording `opens` (comma-separated epoch ms,
/// this opening last) as the openings of the last hour.
pub fn acquire_recording(opens: &str) -> Rule {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    let opens = opens.to_string();
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| is_acquire(r) && value(r, ":opens").as_deref() == Some(&opens))
        .then_output(|| UpdateItemOutput::builder().build())
}

/// The acquire of a closed (or new) circuit with no other opening in the last hour.
pub fn acquire() -> Rule {
    acquire_recording(&NOW_MS.to_string())
}

/// The acquire refused: someone holds the circuit.
pub fn acquire_held() -> Rule {
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(is_acquire)
        .then_error(condition_failed)
}

fn is_take_over(r: &UpdateItemInput, dead: &str, new_owner: &str) -> bool {
    // An execution takes over for good; a recovery for a lease.
    let lease_ok = if new_owner == EXECUTION {
        value(r, ":lease").as_deref() == Some("0")
    } else {
        value(r, ":lease").and_then(|l| l.parse::<u64>().ok()) > Some(NOW_MS)
    };
    is_our_item(r)
        && r.update_expression()
            == Some("SET #owner = :me, #state = :open, reason = :reason, lease_until_ms = :lease")
        && r.condition_expression()
            == Some("#owner = :dead AND (#state = :open OR #state = :gave_up)")
        && value(r, ":gave_up").as_deref() == Some("GAVE_UP")
        && value(r, ":me").as_deref() == Some(new_owner)
        && lease_ok
        && value(r, ":dead").as_deref() == Some(dead)
        && value(r, ":open").as_deref() == Some("OPEN")
        && value(r, ":reason").is_some_and(|s| !s.is_empty())
        && names(r, "#owner").as_deref() == Some("owner")
        && names(r, "#state").as_deref() == Some("state")
}

/// The take-over, by this execution, of the OPEN circuit `dead` left behind.
pub fn take_over(dead: &'static str) -> Rule {
    take_over_by(dead, EXECUTION.to_string())
}

/// The take-over of the OPEN circuit `dead` left behind, as `new_owner`.
pub fn take_over_by(dead: &'static str, new_owner: String) -> Rule {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| is_take_over(r, dead, &new_owner))
        .then_output(|| UpdateItemOutput::builder().build())
}

/// The take-over refused: the circuit changed hands meanwhile.
pub fn take_over_lost(dead: &'static str) -> Rule {
    take_over_lost_by(dead, EXECUTION.to_string())
}

pub fn take_over_lost_by(dead: &'static str, new_owner: String) -> Rule {
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| is_take_over(r, dead, &new_owner))
        .then_error(condition_failed)
}

/// The item moved to `state` (CLOSED or GAVE_UP) by its owner.
pub fn finish(state: &'static str) -> Rule {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| is_finish(r, state))
        .then_output(|| UpdateItemOutput::builder().build())
}

pub fn finish_not_owner(state: &'static str) -> Rule {
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| is_finish(r, state))
        .then_error(condition_failed)
}

/// The item moved to `state` by `owner` (a recovery's own name, say).
pub fn finish_by(state: &'static str, owner: String) -> Rule {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| is_finish_by(r, state, &owner))
        .then_output(|| UpdateItemOutput::builder().build())
}

fn is_finish(r: &UpdateItemInput, state: &str) -> bool {
    is_finish_by(r, state, EXECUTION)
}

fn is_finish_by(r: &UpdateItemInput, state: &str, owner: &str) -> bool {
    is_updated_by(r, owner)
        && r.update_expression() == Some("SET #state = :state, since_ms = :now, reason = :reason")
        && value(r, ":state").as_deref() == Some(state)
        && value(r, ":now") == Some(NOW_MS.to_string())
        && value(r, ":reason").is_some_and(|s| !s.is_empty())
}

/// The circuit given back without having been opened: CLOSED again, the trip not counted.
pub fn release_circuit() -> Rule {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(|r| {
            is_owned_update(r)
                && r.update_expression()
                    == Some(
                        "SET #state = :closed, since_ms = :now, reason = :reason, \
                         recent_opens = :opens ADD trips :minus_one",
                    )
                && value(r, ":opens").is_some()
                && value(r, ":closed").as_deref() == Some("CLOSED")
                && value(r, ":minus_one").as_deref() == Some("-1")
                && value(r, ":reason").is_some_and(|s| !s.is_empty())
        })
        .then_output(|| UpdateItemOutput::builder().build())
}

/// The probe's verdict recorded by the owner.
pub fn record_probe(verdict: &'static str) -> Rule {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| {
            is_owned_update(r)
                && r.update_expression() == Some("SET last_probe_ms = :now, last_probe = :verdict")
                && value(r, ":verdict").as_deref() == Some(verdict)
                && value(r, ":now") == Some(NOW_MS.to_string())
        })
        .then_output(|| UpdateItemOutput::builder().build())
}

/// GetItem (consistent) of `UUID`'s circuit; `None` is no item.
pub fn get_item(record: Option<Item>) -> Rule {
    get_items(UUID, vec![record])
}

/// GetItem (consistent) of `mapping`'s circuit, answering the items in turn, the last one
/// from then on.
pub fn get_items(mapping: &'static str, records: Vec<Option<Item>>) -> Rule {
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    let mut sequence = mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(move |r| {
            r.table_name() == Some(TABLE)
                && r.key().and_then(|k| k.get("mapping_id"))
                    == Some(&AttributeValue::S(mapping.into()))
                && r.consistent_read() == Some(true)
        })
        .sequence();
    for record in records {
        let item = record.map(|r| r.attributes());
        sequence = sequence.output(move || GetItemOutput::builder().set_item(item.clone()).build());
    }
    sequence.repeatedly().build()
}

/// The Scan (consistent) for the circuits this execution holds OPEN, answering `items`.
pub fn scan_open_circuits(items: Vec<Item>) -> Rule {
    scan_open_circuits_of(EXECUTION.to_string(), items)
}

/// The Scan for the circuits the ended execution, or its recovery, holds OPEN.
pub fn scan_recoverable_circuits(items: Vec<Item>) -> Rule {
    scan_open_circuits_of(recovery_owner(EXECUTION), items)
}

/// The Scan (consistent) for the circuits this execution (or `or_owner`) holds OPEN.
fn scan_open_circuits_of(or_owner: String, items: Vec<Item>) -> Rule {
    use aws_sdk_dynamodb::operation::scan::ScanOutput;
    mock!(aws_sdk_dynamodb::Client::scan)
        .match_requests(move |r| {
            let value = |name: &str| r.expression_attribute_values().and_then(|v| v.get(name));
            let name = |n: &str| r.expression_attribute_names().and_then(|v| v.get(n));
            r.table_name() == Some(TABLE)
                && r.filter_expression()
                    == Some("(#owner = :me OR #owner = :or_me) AND #state = :open")
                && value(":me") == Some(&AttributeValue::S(EXECUTION.into()))
                && value(":or_me") == Some(&AttributeValue::S(or_owner.clone()))
                && value(":open") == Some(&AttributeValue::S("OPEN".into()))
                && name("#owner").map(String::as_str) == Some("owner")
                && name("#state").map(String::as_str) == Some("state")
                && r.consistent_read() == Some(true)
        })
        .then_output(move || {
            ScanOutput::builder()
                .set_items(Some(items.iter().map(Item::attributes).collect()))
                .count(items.len() as i32)
                .build()
        })
}

/// ConditionalCheckFailedException, with the error code the SDK's deserializer would set.
pub fn condition_failed() -> aws_sdk_dynamodb::operation::update_item::UpdateItemError {
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(
        ConditionalCheckFailedException::builder()
            .message("The conditional request failed")
            .meta(
                ErrorMetadata::builder()
                    .code("ConditionalCheckFailedException")
                    .message("The conditional request failed")
                    .build(),
            )
            .build(),
    )
}

/// Lambda's TooManyRequestsException metadata (what the SDK's deserializer would set).
pub fn too_many_requests_meta() -> aws_sdk_lambda::error::ErrorMetadata {
    aws_sdk_lambda::error::ErrorMetadata::builder()
        .code("TooManyRequestsException")
        .message("Rate exceeded")
        .build()
}
