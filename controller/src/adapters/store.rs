//! The circuit-state store: one DynamoDB item per mapping, written with conditions.
//!
//! It is both the persisted circuit state (state, since, owner execution, trips, last probe,
//! the mapping as it was found and what the breaker changed on it) and the single-flight
//! lock: an execution may act on a mapping only while the item names it as owner of an OPEN
//! circuit, and it can become owner only when the circuit is closed, or when its owner's
//! execution has ended without releasing it. DynamoDB's conditional writes are atomic, so two
//! executions started by one flapping alarm (or by EventBridge delivering an event twice) can
//! never both own the circuit.

use crate::circuit::{CircuitAttachment, MappingSnapshot};
use crate::error::StepError;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const OPEN: &str = "OPEN";
pub const CLOSED: &str = "CLOSED";
pub const GAVE_UP: &str = "GAVE_UP";

/// The stored state of one mapping's circuit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CircuitRecord {
    pub mapping_id: String,
    pub state: String,
    pub owner: String,
    pub since_ms: u64,
    pub trips: u64,
    pub reason: String,
    pub snapshot: Option<MappingSnapshot>,
    /// When the circuits of the last hour opened (the re-arm bound).
    pub recent_opens: Vec<u64>,
    /// Until when a recovery (an owner that is not an execution) holds the circuit.
    pub lease_until_ms: u64,
    /// The attachment the circuit was opened for (`None`: the built-in consumer), recorded
    /// with the snapshot: the failsafe and the recovery rebuild its configuration from it.
    pub attachment: Option<Box<CircuitAttachment>>,
}

/// What `mapping_snapshot` holds: the snapshot, and the attachment the circuit was opened
/// for. Both are written together by every acquire, so an attachment never outlives the
/// circuit it opened; the built-in consumer's item is byte for byte what it always was.
#[derive(Serialize, Deserialize)]
struct Stored<'a> {
    #[serde(flatten)]
    snapshot: std::borrow::Cow<'a, MappingSnapshot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attachment: Option<std::borrow::Cow<'a, CircuitAttachment>>,
}

fn stored_text(
    snapshot: &MappingSnapshot,
    attachment: Option<&CircuitAttachment>,
) -> Result<String, StepError> {
    serde_json::to_string(&Stored {
        snapshot: std::borrow::Cow::Borrowed(snapshot),
        attachment: attachment.map(std::borrow::Cow::Borrowed),
    })
    .map_err(|e| StepError::Fatal(format!("serialising the mapping snapshot: {e}")))
}

/// The owner a recovery takes a circuit over as, from the ended execution it recovers: not an
/// execution ARN, so that nobody mistakes it for one; its hold is bounded by a lease.
pub fn recovery_owner(ended_execution: &str) -> String {
    format!("recovery of {ended_execution}")
}

/// The outcome of trying to take the circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// This execution owns the circuit; the snapshot is the one taken when it first did
    /// (a retried step must not mistake the mapping it disabled itself for an operator's).
    Acquired(MappingSnapshot),
    /// Someone else holds it (`state` OPEN or GAVE_UP).
    HeldBy(CircuitRecord),
}

/// Whose circuit it is, as a step about to act must know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// This execution owns the open circuit.
    Open(CircuitRecord),
    /// This execution owned it and has already ended it (a retried final step).
    Released(CircuitRecord),
    /// Another execution or person holds it, or there is no circuit.
    Other(String),
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

fn opens_text(opens: &[u64]) -> String {
    opens
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
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

    /// Takes the circuit for `execution` if it is closed (or already this execution's),
    /// recording `recent_opens` (this opening included) and the attachment it opens for.
    #[allow(clippy::too_many_arguments)]
    pub async fn acquire(
        &self,
        mapping: &str,
        execution: &str,
        now_ms: u64,
        snapshot: &MappingSnapshot,
        attachment: Option<&CircuitAttachment>,
        reason: &str,
        recent_opens: &[u64],
    ) -> Result<Acquire, StepError> {
        let stored = stored_text(snapshot, attachment)?;
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .key("mapping_id", s(mapping))
            .update_expression(
                "SET #state = :open, #owner = :me, since_ms = :now, mapping_snapshot = :snapshot, \
                 reason = :reason, recent_opens = :opens ADD trips :one",
            )
            .condition_expression("attribute_not_exists(mapping_id) OR #state = :closed")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":open", s(OPEN))
            .expression_attribute_values(":closed", s(CLOSED))
            .expression_attribute_values(":me", s(execution))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":snapshot", s(&stored))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":opens", s(&opens_text(recent_opens)))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Acquire::Acquired(snapshot.clone())),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => {
                // Held: by this very execution (a retried step) or by another one.
                let record = self.get(mapping).await?.unwrap_or_default();
                Ok(match record.snapshot {
                    Some(first) if record.owner == execution && record.state == OPEN => {
                        Acquire::Acquired(first)
                    }
                    _ => Acquire::HeldBy(record),
                })
            }
            Err(e) => Err(StepError::aws("UpdateItem", e)),
        }
    }

    /// Takes over an OPEN circuit whose owner has ended without releasing it, as `new_owner`
    /// (held until `lease_until_ms` when that is not an execution); a GAVE_UP one too (only an
    /// operator's close reaches for it), which becomes OPEN again under its new owner, to be
    /// ended like any open circuit. Returns false when the circuit changed hands meanwhile.
    pub async fn take_over(
        &self,
        mapping: &str,
        new_owner: &str,
        dead_owner: &str,
        reason: &str,
        lease_until_ms: u64,
    ) -> Result<bool, StepError> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .key("mapping_id", s(mapping))
            .update_expression(
                "SET #owner = :me, #state = :open, reason = :reason, lease_until_ms = :lease",
            )
            .condition_expression("#owner = :dead AND (#state = :open OR #state = :gave_up)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":open", s(OPEN))
            .expression_attribute_values(":gave_up", s(GAVE_UP))
            .expression_attribute_values(":me", s(new_owner))
            .expression_attribute_values(":dead", s(dead_owner))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":lease", n(lease_until_ms))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => Ok(false),
            Err(e) => Err(StepError::aws("UpdateItem", e)),
        }
    }

    /// Whose circuit this is: read before any step acts on the mapping.
    pub async fn ownership(&self, mapping: &str, execution: &str) -> Result<Ownership, StepError> {
        Ok(match self.get(mapping).await? {
            Some(record) if record.owner == execution && record.state == OPEN => {
                Ownership::Open(record)
            }
            Some(record) if record.owner == execution => Ownership::Released(record),
            Some(record) => Ownership::Other(record.owner),
            None => Ownership::Other(String::new()),
        })
    }

    /// Fails with NotOwner unless `execution` owns the open circuit; returns its record.
    pub async fn owned(&self, mapping: &str, execution: &str) -> Result<CircuitRecord, StepError> {
        match self.ownership(mapping, execution).await? {
            Ownership::Open(record) => Ok(record),
            Ownership::Released(record) => Err(StepError::NotOwner {
                mapping: mapping.to_string(),
                owner: format!("nobody (this execution already ended it: {})", record.state),
            }),
            Ownership::Other(owner) => Err(StepError::NotOwner {
                mapping: mapping.to_string(),
                owner,
            }),
        }
    }

    /// Every circuit `owner` (or, with `or_owner`, that one) still holds open: normally
    /// none or one.
    pub async fn open_circuits_of(
        &self,
        owner: &str,
        or_owner: Option<&str>,
    ) -> Result<Vec<CircuitRecord>, StepError> {
        let mut found = Vec::new();
        let mut pages = self
            .dynamodb
            .scan()
            .table_name(&self.table)
            .filter_expression("(#owner = :me OR #owner = :or_me) AND #state = :open")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":or_me", s(or_owner.unwrap_or(owner)))
            .expression_attribute_values(":open", s(OPEN))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StepError::aws("Scan", e))?;
            found.extend(page.items().iter().map(record_of));
        }
        Ok(found)
    }

    /// Sets fields on the circuit while `execution` owns it open.
    async fn update_owned(
        &self,
        mapping: &str,
        execution: &str,
        set: &str,
        values: HashMap<String, AttributeValue>,
    ) -> Result<(), StepError> {
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.table)
            .key("mapping_id", s(mapping))
            .update_expression(set)
            .condition_expression("#owner = :me AND #state = :open")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#state", "state")
            .set_expression_attribute_values(Some(
                values
                    .into_iter()
                    .chain([
                        (":me".to_string(), s(execution)),
                        (":open".to_string(), s(OPEN)),
                    ])
                    .collect(),
            ))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(is_condition_failure) => {
                self.owned(mapping, execution).await.map(drop)
            }
            Err(e) => Err(StepError::aws("UpdateItem", e)),
        }
    }

    /// Gives the circuit back without having opened it (the mapping was not enabled):
    /// `recent_opens` goes back to the openings before this one.
    pub async fn release(
        &self,
        mapping: &str,
        execution: &str,
        now_ms: u64,
        reason: &str,
        recent_opens: &[u64],
    ) -> Result<(), StepError> {
        self.update_owned(
            mapping,
            execution,
            "SET #state = :closed, since_ms = :now, reason = :reason, recent_opens = :opens \
             ADD trips :minus_one",
            HashMap::from([
                (":closed".into(), s(CLOSED)),
                (":now".into(), n(now_ms)),
                (":reason".into(), s(reason)),
                (":opens".into(), s(&opens_text(recent_opens))),
                (":minus_one".into(), AttributeValue::N("-1".into())),
            ]),
        )
        .await
    }

    /// Records what the breaker is about to change on the mapping (the snapshot's `changed`)
    /// while `execution` owns the circuit open, so that every ending gives it back.
    pub async fn record_changes(
        &self,
        mapping: &str,
        execution: &str,
        snapshot: &MappingSnapshot,
        attachment: Option<&CircuitAttachment>,
    ) -> Result<(), StepError> {
        let stored = stored_text(snapshot, attachment)?;
        self.update_owned(
            mapping,
            execution,
            "SET mapping_snapshot = :snapshot",
            HashMap::from([(":snapshot".into(), s(&stored))]),
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

    /// Ends the circuit: `state` CLOSED, or GAVE_UP to keep it open for an operator. A retry
    /// after it was already ended by this execution succeeds without writing.
    pub async fn finish(
        &self,
        mapping: &str,
        execution: &str,
        now_ms: u64,
        state: &str,
        reason: &str,
    ) -> Result<(), StepError> {
        let written = self
            .update_owned(
                mapping,
                execution,
                "SET #state = :state, since_ms = :now, reason = :reason",
                HashMap::from([
                    (":state".into(), s(state)),
                    (":now".into(), n(now_ms)),
                    (":reason".into(), s(reason)),
                ]),
            )
            .await;
        match written {
            Err(StepError::NotOwner { .. }) => match self.ownership(mapping, execution).await? {
                Ownership::Released(_) => Ok(()),
                _ => written,
            },
            other => other,
        }
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
    let stored: Option<Stored<'static>> = serde_json::from_str(&text("mapping_snapshot")).ok();
    let (snapshot, attachment) = match stored {
        Some(stored) => (
            Some(stored.snapshot.into_owned()),
            stored.attachment.map(|a| Box::new(a.into_owned())),
        ),
        None => (None, None),
    };
    CircuitRecord {
        mapping_id: text("mapping_id"),
        state: text("state"),
        owner: text("owner"),
        since_ms: number("since_ms"),
        trips: number("trips"),
        reason: text("reason"),
        snapshot,
        recent_opens: text("recent_opens")
            .split(',')
            .filter_map(|t| t.parse().ok())
            .collect(),
        lease_until_ms: number("lease_until_ms"),
        attachment,
    }
}
