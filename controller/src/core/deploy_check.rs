//! The configuration check the moment the stack is deployed: CloudFormation's "Stack Status
//! Change" event reaches the controller, which announces a refused configuration then rather
//! than at the first outage. CloudFormation itself cannot compare two parameters or test a
//! suffix before it creates anything, so these refusals are the controller's.

use serde::Serialize;
use serde_json::Value;

use crate::core::ConfigError;

/// The detail-type of the event that announces a refused configuration.
pub const MISCONFIGURED: &str = "Breaker Misconfigured";

/// Whether an invocation is CloudFormation's word that a stack operation finished.
pub fn is_stack_status_change(event: &Value) -> bool {
    event["source"] == "aws.cloudformation"
        && event["detail-type"] == "CloudFormation Stack Status Change"
}

/// The "Breaker Misconfigured" event's detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Misconfigured {
    /// The consumer and queue as configured (raw: the configuration did not pass).
    pub function: String,
    pub queue: String,
    /// The stack and what it reached (`CREATE_COMPLETE`, `UPDATE_COMPLETE`), when the check
    /// ran on its deploy.
    pub stack: String,
    pub status: String,
    /// What to change, in words.
    pub reason: String,
}

/// The detail announcing `error` for the deploy `event`.
pub fn misconfigured(
    event: &Value,
    get: impl Fn(&str) -> Option<String>,
    error: &ConfigError,
) -> Misconfigured {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Misconfigured {
        function: get("CONSUMER_FUNCTION_NAME").unwrap_or_default(),
        queue: get("QUEUE_ARN").unwrap_or_default(),
        stack: text(&event["detail"]["stack-id"]),
        status: text(&event["detail"]["status-details"]["status"]),
        reason: format!("the breaker refuses to act until this is fixed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// CloudFormation's documented "Stack Status Change" event.
    fn deployed() -> Value {
        json!({
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": "CloudFormation Stack Status Change",
            "source": "aws.cloudformation",
            "account": "123456789012",
            "time": "2026-12-06T12:00:00Z",
            "region": "us-east-1",
            "resources": ["arn:aws:cloudformation:us-east-1:123456789012:stack/orders-breaker/6f1c4f30-d3c6-11ef-8d5b-0affd3e8a8b7"],
            "detail": {
                "stack-id": "arn:aws:cloudformation:us-east-1:123456789012:stack/orders-breaker/6f1c4f30-d3c6-11ef-8d5b-0affd3e8a8b7",
                "status-details": {"status": "UPDATE_COMPLETE", "status-reason": ""},
                "client-request-token": "Console-CreateStack-7e3f"
            }
        })
    }

    #[test]
    fn a_deploy_event_is_recognised_and_a_step_request_is_not() {
        assert!(is_stack_status_change(&deployed()));
        assert!(!is_stack_status_change(
            &json!({"step": "open", "input": {}})
        ));
        assert!(!is_stack_status_change(
            &json!({"source": "aws.cloudwatch", "detail-type": "CloudWatch Alarm State Change"})
        ));
    }

    #[test]
    fn the_announcement_says_what_to_change() {
        let env = |name: &str| match name {
            "CONSUMER_FUNCTION_NAME" => Some("orders-consumer".to_string()),
            "QUEUE_ARN" => Some("arn:aws:sqs:us-east-1:123456789012:orders".to_string()),
            _ => None,
        };
        let detail = misconfigured(
            &deployed(),
            env,
            &ConfigError::MinDelayAboveMax { min: 600, max: 300 },
        );
        assert_eq!(detail.function, "orders-consumer");
        assert_eq!(detail.status, "UPDATE_COMPLETE");
        assert!(detail
            .stack
            .ends_with("stack/orders-breaker/6f1c4f30-d3c6-11ef-8d5b-0affd3e8a8b7"));
        assert_eq!(
            detail.reason,
            "the breaker refuses to act until this is fixed: MIN_DELAY_SECONDS=600 must be at \
             most MAX_DELAY_SECONDS=300"
        );
    }
}
