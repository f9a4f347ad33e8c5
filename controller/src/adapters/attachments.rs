//! The attachments table (`ATTACHMENTS_TABLE`): one item per consumer attached to this
//! deployment, hash key `id` (S). An item holds `settings` (S: a JSON object keyed by the
//! attachment template's parameter names, what `Config::for_attachment` takes) and, when the
//! attachment has a role of its own, `role_arn` (S).

use crate::circuit::CircuitAttachment;
use crate::error::StepError;
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use std::collections::HashMap;

/// The attachments table and the client that reads it (the controller's own).
#[derive(Debug, Clone)]
pub struct Attachments {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub table: String,
}

/// How `put` may write: a registration only where no item is, an update only over its own id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    Register,
    Update,
}

/// What `put` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    Written,
    /// A registration found an item under its id: another attachment's, left as it was.
    AlreadyRegistered,
    /// An update found no item under its id: nothing was written.
    NotRegistered,
}

/// Why a stored item cannot be used. Only a hand-edited or foreign item gets here: the
/// registration writes what `item_attributes` makes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    #[error("the attachments table has an item without an id")]
    NoId,
    #[error("attachment {id:?}: its item has no settings")]
    NoSettings { id: String },
    #[error("attachment {id:?}: its settings are not a JSON object: {reason}")]
    NotAnObject { id: String, reason: String },
    #[error("attachment {id:?}: its settings name Id {settings_id}, not its own")]
    OtherId { id: String, settings_id: String },
}

/// The attachment an item stands for. Settings without `Id` get the item's; settings naming
/// another id are refused (a copy of another attachment's item must not act as it).
pub fn attachment_of(
    item: &HashMap<String, AttributeValue>,
) -> Result<CircuitAttachment, ItemError> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let id = text("id")
        .filter(|id| !id.is_empty())
        .ok_or(ItemError::NoId)?;
    let raw = text("settings").ok_or_else(|| ItemError::NoSettings { id: id.clone() })?;
    let mut settings: Value = serde_json::from_str(&raw).map_err(|e| ItemError::NotAnObject {
        id: id.clone(),
        reason: e.to_string(),
    })?;
    let fields = settings
        .as_object_mut()
        .ok_or_else(|| ItemError::NotAnObject {
            id: id.clone(),
            reason: "not an object".into(),
        })?;
    match fields.get("Id") {
        None | Some(Value::Null) => {
            fields.insert("Id".into(), Value::String(id.clone()));
        }
        Some(Value::String(own)) if *own == id => {}
        Some(other) => {
            return Err(ItemError::OtherId {
                settings_id: other.to_string(),
                id,
            })
        }
    }
    Ok(CircuitAttachment {
        id,
        settings,
        role_arn: text("role_arn").filter(|r| !r.trim().is_empty()),
    })
}

/// The item that stores `attachment`.
pub fn item_attributes(attachment: &CircuitAttachment) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("id".to_string(), AttributeValue::S(attachment.id.clone())),
        (
            "settings".to_string(),
            AttributeValue::S(attachment.settings.to_string()),
        ),
    ]);
    if let Some(role) = &attachment.role_arn {
        item.insert("role_arn".into(), AttributeValue::S(role.clone()));
    }
    item
}

fn unusable(e: ItemError) -> StepError {
    StepError::Config(e.to_string())
}

impl Attachments {
    /// The attachment registered as `id`, if any (read consistently: a registration just
    /// written is seen by the next alarm).
    pub async fn get(&self, id: &str) -> Result<Option<CircuitAttachment>, StepError> {
        let out = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StepError::aws("GetItem", e))?;
        out.item().map(attachment_of).transpose().map_err(unusable)
    }

    /// Every registered attachment (a Scan, every page). An unusable item fails the listing:
    /// it names the item, which someone must fix.
    pub async fn list(&self) -> Result<Vec<CircuitAttachment>, StepError> {
        self.list_each()
            .await?
            .into_iter()
            .map(|item| item.map_err(unusable))
            .collect()
    }

    /// Every item (a Scan, every page), each usable or not: the operator's `status` shows an
    /// unusable item as that consumer's error, next to the others.
    pub async fn list_each(&self) -> Result<Vec<Result<CircuitAttachment, ItemError>>, StepError> {
        let mut found = Vec::new();
        let mut pages = self
            .dynamodb
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StepError::aws("Scan", e))?;
            found.extend(page.items().iter().map(attachment_of));
        }
        Ok(found)
    }

    /// Writes `attachment`'s item: a registration only where its id has no item, an update
    /// only over the item of its own id, so neither ever replaces another attachment's.
    pub async fn put(
        &self,
        attachment: &CircuitAttachment,
        mode: PutMode,
    ) -> Result<Put, StepError> {
        let condition = match mode {
            PutMode::Register => "attribute_not_exists(id)",
            PutMode::Update => "attribute_exists(id)",
        };
        let result = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_attributes(attachment)))
            .condition_expression(condition)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Put::Written),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(match mode {
                    PutMode::Register => Put::AlreadyRegistered,
                    PutMode::Update => Put::NotRegistered,
                })
            }
            Err(e) => Err(StepError::aws("PutItem", e)),
        }
    }

    /// Removes `id`'s item (nothing to remove is not an error).
    pub async fn delete(&self, id: &str) -> Result<(), StepError> {
        self.dynamodb
            .delete_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_string()))
            .send()
            .await
            .map_err(|e| StepError::aws("DeleteItem", e))?;
        Ok(())
    }
}

/// [`Attachments::list`] by a path that names this module: the IAM test follows a method
/// call by its name alone, and `list` is also the executions' (ListExecutions).
pub async fn list(attachments: &Attachments) -> Result<Vec<CircuitAttachment>, StepError> {
    attachments.list().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item(fields: &[(&str, &str)]) -> HashMap<String, AttributeValue> {
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), AttributeValue::S(v.to_string())))
            .collect()
    }

    #[test]
    fn an_item_is_its_id_settings_and_role() {
        let settings = json!({"Id": "orders", "QueueArn": "q", "BackoffBaseSeconds": 30});
        let found = attachment_of(&item(&[
            ("id", "orders"),
            ("settings", &settings.to_string()),
            (
                "role_arn",
                "arn:aws:iam::123456789012:role/sqs-circuit-breaker/b/orders",
            ),
        ]))
        .expect("usable");
        assert_eq!(found.id, "orders");
        assert_eq!(found.settings, settings);
        assert_eq!(
            found.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/sqs-circuit-breaker/b/orders")
        );
        // What `put` writes reads back as the same attachment.
        assert_eq!(attachment_of(&item_attributes(&found)), Ok(found));
    }

    #[test]
    fn settings_without_an_id_take_the_items_and_another_id_is_refused() {
        let found = attachment_of(&item(&[
            ("id", "orders"),
            ("settings", "{\"QueueArn\": \"q\"}"),
        ]))
        .expect("usable");
        assert_eq!(found.settings, json!({"Id": "orders", "QueueArn": "q"}));
        assert_eq!(found.role_arn, None);
        assert_eq!(
            attachment_of(&item(&[
                ("id", "orders"),
                ("settings", "{\"Id\": \"payments\"}")
            ])),
            Err(ItemError::OtherId {
                id: "orders".into(),
                settings_id: "\"payments\"".into()
            })
        );
    }

    #[test]
    fn unusable_items_say_what_is_wrong() {
        assert_eq!(
            attachment_of(&item(&[("settings", "{}")])),
            Err(ItemError::NoId)
        );
        assert_eq!(
            attachment_of(&item(&[("id", "orders")])),
            Err(ItemError::NoSettings {
                id: "orders".into()
            })
        );
        for bad in ["[1]", "not json", "\"orders\""] {
            assert!(
                matches!(
                    attachment_of(&item(&[("id", "orders"), ("settings", bad)])),
                    Err(ItemError::NotAnObject { .. })
                ),
                "{bad}"
            );
        }
        // A blank role is no role.
        let found = attachment_of(&item(&[("id", "o"), ("settings", "{}"), ("role_arn", " ")]))
            .expect("usable");
        assert_eq!(found.role_arn, None);
    }
}
