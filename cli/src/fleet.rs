//! The consumers one deployment guards: the built-in one (the controller's environment names
//! it) and every attachment in its attachments table (`ATTACHMENTS_TABLE`); which one a
//! command is for (`--consumer`); the context each is read and acted on with, built as the
//! controller builds it (`Context::for_consumer`).

use crate::error::OperatorError;
use controller::adapters::attachments::ItemError;
use controller::circuit::CircuitAttachment;
use controller::core::attachment::{route, Target};
use controller::error::StepError;
use controller::steps::Context;
use serde_json::{json, Value};

pub use controller::core::attachment::BUILT_IN;

/// One consumer the deployment guards, as its attachments table lists it.
#[derive(Debug, Clone, PartialEq)]
pub enum Listed {
    BuiltIn,
    Attachment(CircuitAttachment),
    /// An item no controller can use (hand-edited, foreign): its id and why.
    Unusable {
        id: String,
        error: String,
    },
}

impl Listed {
    pub fn id(&self) -> &str {
        match self {
            Listed::BuiltIn => BUILT_IN,
            Listed::Attachment(a) => &a.id,
            Listed::Unusable { id, .. } => id,
        }
    }
}

fn item_id(error: &ItemError) -> String {
    match error {
        ItemError::NoId => "(no id)".into(),
        ItemError::NoSettings { id }
        | ItemError::NotAnObject { id, .. }
        | ItemError::OtherId { id, .. } => id.clone(),
    }
}

/// Every consumer, the built-in one first, then the attachments by id.
pub async fn list(ctx: &Context) -> Result<Vec<Listed>, OperatorError> {
    let mut listed = Vec::new();
    if !ctx.fleet.fleet_only {
        listed.push(Listed::BuiltIn);
    }
    if let Some(table) = &ctx.fleet.attachments {
        let mut attached: Vec<Listed> = table
            .list_each()
            .await?
            .into_iter()
            .map(|item| match item {
                Ok(attachment) => Listed::Attachment(attachment),
                Err(e) => Listed::Unusable {
                    id: item_id(&e),
                    error: e.to_string(),
                },
            })
            .collect();
        attached.sort_by(|a, b| a.id().cmp(b.id()));
        listed.extend(attached);
    }
    Ok(listed)
}

/// Why no consumer was selected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("this breaker deployment guards no consumer yet: nothing is attached to it")]
    NoConsumer,
    #[error(
        "this breaker deployment guards {} consumers: say which with --consumer ({})",
        ids.len(),
        ids.join(", ")
    )]
    Several { ids: Vec<String> },
    #[error(
        "this breaker deployment guards no consumer {wanted:?}; its consumers: {}",
        if ids.is_empty() { "none".to_string() } else { ids.join(", ") }
    )]
    Unknown { wanted: String, ids: Vec<String> },
}

/// The consumer a command is for: the one asked for, or, when none is, the only one.
pub fn select<'a>(ids: &'a [String], wanted: Option<&str>) -> Result<&'a str, SelectError> {
    match (wanted, ids) {
        (Some(wanted), _) => ids
            .iter()
            .find(|id| *id == wanted)
            .map(String::as_str)
            .ok_or_else(|| SelectError::Unknown {
                wanted: wanted.to_string(),
                ids: ids.to_vec(),
            }),
        (None, []) => Err(SelectError::NoConsumer),
        (None, [only]) => Ok(only),
        (None, _) => Err(SelectError::Several { ids: ids.to_vec() }),
    }
}

/// The consumer an execution's input is for: the attachment it names, or [`BUILT_IN`] for
/// any other input. An input no controller would route is nobody's (`None`).
pub fn consumer_of(input: &Value) -> Option<&str> {
    match route(input).ok()?.target {
        Target::BuiltIn => Some(BUILT_IN),
        Target::Attachment(attachment) => Some(attachment),
    }
}

/// Whether an execution's input is for consumer `id` ([`consumer_of`]).
pub fn is_for(input: &Value, id: &str) -> bool {
    consumer_of(input) == Some(id)
}

/// The input of an operator's `open` for `attachment` (`None`: the built-in consumer), as
/// `OpenCircuit` routes it.
pub fn open_input(operator: Value, attachment: Option<&str>) -> Value {
    match attachment {
        None => operator,
        Some(id) => json!({"attachment": id, "event": operator}),
    }
}

/// The context a consumer is read and acted on with: the attachment's settings over the
/// deployment's defaults, as the controller rebuilds them. The operator acts under their own
/// credentials: an attachment's role trusts only the controller, so it is not assumed.
pub async fn context(
    ctx: &Context,
    attachment: Option<&CircuitAttachment>,
) -> Result<Context, StepError> {
    let as_operator = attachment.map(|a| CircuitAttachment {
        role_arn: None,
        ..a.clone()
    });
    ctx.for_consumer(as_operator.as_ref()).await
}

/// The consumer a command acts on.
pub struct Consumer {
    pub id: String,
    /// `None`: the built-in consumer.
    pub attachment: Option<CircuitAttachment>,
    pub ctx: Context,
}

impl Consumer {
    /// The attachment's id, for an attachment.
    pub fn attachment_id(&self) -> Option<&str> {
        self.attachment.as_ref().map(|a| a.id.as_str())
    }

    /// The executions to show for this consumer: all of them in a deployment without
    /// attachments (as before), else only those whose input is for it.
    pub fn execution_filter(&self) -> Option<&str> {
        self.ctx
            .fleet
            .attachments
            .as_ref()
            .map(|_| self.id.as_str())
    }
}

/// The consumer `wanted` names, or the deployment's only one. A deployment without an
/// attachments table reads nothing more: its built-in consumer is the one.
pub async fn consumer(ctx: &Context, wanted: Option<&str>) -> Result<Consumer, OperatorError> {
    let built_in = || Consumer {
        id: BUILT_IN.into(),
        attachment: None,
        ctx: ctx.clone(),
    };
    let Some(table) = &ctx.fleet.attachments else {
        let ids = if ctx.fleet.fleet_only {
            vec![]
        } else {
            vec![BUILT_IN.to_string()]
        };
        select(&ids, wanted)?;
        return Ok(built_in());
    };
    if wanted == Some(BUILT_IN) && !ctx.fleet.fleet_only {
        return Ok(built_in());
    }
    if let Some(id) = wanted {
        if let Some(attachment) = table.get(id).await? {
            return Ok(Consumer {
                id: id.to_string(),
                ctx: context(ctx, Some(&attachment)).await?,
                attachment: Some(attachment),
            });
        }
    }
    let listed = list(ctx).await?;
    let ids: Vec<String> = listed.iter().map(|l| l.id().to_string()).collect();
    let id = select(&ids, wanted)?;
    match listed.into_iter().find(|l| l.id() == id) {
        Some(Listed::Attachment(attachment)) => Ok(Consumer {
            id: id.to_string(),
            ctx: context(ctx, Some(&attachment)).await?,
            attachment: Some(attachment),
        }),
        Some(Listed::Unusable { error, .. }) => Err(StepError::Config(error).into()),
        _ => Ok(built_in()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_only_consumer_needs_no_name_and_several_need_one() {
        let single = ids(&[BUILT_IN]);
        assert_eq!(select(&single, None), Ok(BUILT_IN));
        assert_eq!(select(&single, Some(BUILT_IN)), Ok(BUILT_IN));
        let fleet = ids(&[BUILT_IN, "orders", "payments"]);
        assert_eq!(select(&fleet, Some("orders")), Ok("orders"));
        let several = select(&fleet, None).expect_err("several");
        assert_eq!(
            several.to_string(),
            "this breaker deployment guards 3 consumers: say which with --consumer \
             (built-in, orders, payments)"
        );
        let unknown = select(&fleet, Some("shipping")).expect_err("unknown");
        assert_eq!(
            unknown.to_string(),
            "this breaker deployment guards no consumer \"shipping\"; its consumers: \
             built-in, orders, payments"
        );
        assert_eq!(select(&[], None), Err(SelectError::NoConsumer));
        assert_eq!(select(&ids(&["orders"]), None), Ok("orders"));
    }

    #[test]
    fn an_execution_is_for_the_consumer_its_input_names() {
        let operator = json!({"operator": {"reason": "r", "hold": false}});
        assert!(is_for(&operator, BUILT_IN));
        assert!(!is_for(&operator, "orders"));
        let attached = open_input(operator.clone(), Some("orders"));
        assert_eq!(attached, json!({"attachment": "orders", "event": operator}));
        assert!(is_for(&attached, "orders"));
        assert!(!is_for(&attached, BUILT_IN));
        assert!(!is_for(&attached, "payments"));
        assert_eq!(open_input(operator.clone(), None), operator);
        // An alarm event is the built-in consumer's; an input no controller routes, nobody's.
        assert!(is_for(
            &json!({"detail-type": "CloudWatch Alarm State Change"}),
            BUILT_IN
        ));
        assert!(!is_for(&json!({"attachment": "bad id"}), "bad id"));
        assert!(!is_for(&json!({"attachment": "orders"}), "orders"));
        assert_eq!(consumer_of(&attached), Some("orders"));
        assert_eq!(consumer_of(&operator), Some(BUILT_IN));
        // An input that is not JSON reads as null: the built-in consumer's, as it always was.
        assert_eq!(consumer_of(&Value::Null), Some(BUILT_IN));
        assert_eq!(consumer_of(&json!({"attachment": 7, "event": {}})), None);
    }
}
