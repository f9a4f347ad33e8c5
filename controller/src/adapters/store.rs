//! The circuit-state store: one DynamoDB item per mapping, written with conditions.
//!
//! It is both the persisted circuit state (state, since, owner execution, trips, last probe)
//! and the single-flight lock: an execution may act on a mapping only while the item names
//! it as owner, and it can become owner only when the circuit is closed. DynamoDB's
//! conditional writes are atomic, so two executions started by one flapping alarm (or by
//! EventBridge delivering an event twice) can never both own the circuit.

use crate::circuit::MappingSnapshot;
use crate::error::StepError;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

pub const OPEN: &str = "OPEN";
pub const CLOSED: &str = "CLOSED";
pub const GAVE_UP: &str = "GAVE_UP";

/// The stored state of one mapping's circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitRecord {
    pub state: String,
    pub owner: String,
    pub since_ms: u64,
    pub trips: u64,
    pub snapshot: Option<MappingSnapshot>,
}

/// The outcome of trying to take the circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// This execution owns the circuit; the snapshot is the one taken when it first did
    /// (a retried step must not mistake the mapping it disabled itself for an operator's).
    Acquired(MappingSnapshot),
    HeldBy(String),
}

#[derive(Debug, Clone)]
pub struct Store {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub table: String,
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn is_condition_failure<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

impl Store {
    pub async fn get(&self, mapping: &str) -> Result<Option<CircuitRecord>, StepError> {
        let out = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("mapping_id", s(mapping))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StepError::aws("GetItem", e))?;
        Ok(out.item().map(record_of))
    }

    /// Takes the circuit for `execution` if it is closed (or already this execution's).
    pub async fn acquire(
        &self,
        mapping: &str,
        execution: &str,
        now_ms: u64,
        snapshot: &MappingSnapshot,
    ) -> Result<Acquire, StepError> {
        let stored = serde_json::to_string(snapshot)
            .map_err(|e| StepError::Fatal(format!("serialising the mapping snapshot: {e}")))?;
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .key("mapping_id", s(mapping))
            .update_expression(
                "SET #state = :open, #owner = :me, since_ms = :now, mapping_snapshot = :snapshot ADD trips :one",
            )
            .condition_expression("attribute_not_exists(mapping_id) OR #state = :closed")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":open", s(OPEN))
            .expression_attribute_values(":closed", s(CLOSED))
            .expression_attribute_values(":me", s(execution))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":snapshot", s(&stored))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Acquire::Acquired(snapshot.clone())),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => {
                // Held: by this very execution (a retried step) or by another one.
                let record = self.get(mapping).await?;
                Ok(match record {
                    Some(CircuitRecord {
                        owner,
                        snapshot: Some(first),
                        ..
                    }) if owner == execution => Acquire::Acquired(first),
                    Some(record) => Acquire::HeldBy(record.owner),
                    None => Acquire::HeldBy(String::new()),
                })
            }
            Err(e) => Err(StepError::aws("UpdateItem", e)),
        }
    }

    /// Sets fields on the circuit while `execution` owns it.
    async fn update_owned(
        &self,
        mapping: &str,
        execution: &str,
        set: &str,
        values: HashMap<String, AttributeValue>,
    ) -> Result<(), StepError> {
        let mut request = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .key("mapping_id", s(mapping))
            .update_expression(set)
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", "owner")
            .set_expression_attribute_values(Some(
                values
                    .into_iter()
                    .chain([(":me".to_string(), s(execution))])
                    .collect(),
            ));
        // DynamoDB refuses names the expressions do not use.
        if set.contains("#state") {
            request = request.expression_attribute_names("#state", "state");
        }
        let result = request.send().await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => {
                let owner = self
                    .get(mapping)
                    .await?
                    .map(|r| r.owner)
                    .unwrap_or_default();
                Err(StepError::NotOwner {
                    mapping: mapping.to_string(),
                    owner,
                })
            }
            Err(e) => Err(StepError::aws("UpdateItem", e)),
        }
    }

    /// Fails with NotOwner unless `execution` owns the circuit: checked before acting on
    /// the mapping, so an execution that lost the circuit never touches it.
    pub async fn ensure_owner(&self, mapping: &str, execution: &str) -> Result<(), StepError> {
        let owner = self
            .get(mapping)
            .await?
            .map(|r| r.owner)
            .unwrap_or_default();
        if owner == execution {
            Ok(())
        } else {
            Err(StepError::NotOwner {
                mapping: mapping.to_string(),
                owner,
            })
        }
    }

    /// Gives the circuit back without having opened it (the mapping was not enabled).
    pub async fn release(
        &self,
        mapping: &str,
        execution: &str,
        now_ms: u64,
    ) -> Result<(), StepError> {
        self.update_owned(
            mapping,
            execution,
            "SET #state = :closed, since_ms = :now ADD trips :minus_one",
            HashMap::from([
                (":closed".into(), s(CLOSED)),
                (":now".into(), n(now_ms)),
                (":minus_one".into(), AttributeValue::N("-1".into())),
            ]),
        )
        .await
    }

    pub async fn record_probe(
        &self,
        mapping: &str,
        execution: &str,
        now_ms: u64,
        verdict: &str,
    ) -> Result<(), StepError> {
        self.update_owned(
            mapping,
            execution,
            "SET last_probe_ms = :now, last_probe = :verdict",
            HashMap::from([(":now".into(), n(now_ms)), (":verdict".into(), s(verdict))]),
        )
        .await
    }

    /// Moves the circuit to `state` (CLOSED, or GAVE_UP to keep it open for an operator).
    pub async fn finish(
        &self,
        mapping: &str,
        execution: &str,
        now_ms: u64,
        state: &str,
    ) -> Result<(), StepError> {
        self.update_owned(
            mapping,
            execution,
            "SET #state = :state, since_ms = :now",
            HashMap::from([(":state".into(), s(state)), (":now".into(), n(now_ms))]),
        )
        .await
    }
}

fn record_of(item: &HashMap<String, AttributeValue>) -> CircuitRecord {
    let text = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    let number = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    CircuitRecord {
        state: text("state"),
        owner: text("owner"),
        since_ms: number("since_ms"),
        trips: number("trips"),
        snapshot: serde_json::from_str(&text("mapping_snapshot")).ok(),
    }
}
