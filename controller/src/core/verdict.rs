//! The probe verdict: did the consumer handle the one probe record?
//!
//! The rules mirror how Lambda's SQS event source judges a batch, so that a
//! probe the breaker calls healthy is one the real event source mapping would
//! also have deleted. Where AWS is silent the verdict leans towards `Failed`:
//! a false failure only keeps the circuit open a little longer, a false
//! success re-opens the floodgates onto a broken consumer.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What came back from synchronously invoking the consumer with the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeInvocation<'a> {
    /// `X-Amz-Function-Error` (`Unhandled`, `Handled`), if any.
    pub function_error: Option<&'a str>,
    /// The function's response payload.
    pub payload: &'a [u8],
    /// Whether the event source mapping has `ReportBatchItemFailures` on.
    pub reports_batch_item_failures: bool,
    /// SQS message id of the probe record.
    pub message_id: &'a str,
}

/// Outcome of one probe. Serialised as `{"verdict":"Healthy"}` or
/// `{"verdict":"Failed","reason":"..."}` so a Choice state can test
/// `$.verdict`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict")]
pub enum Verdict {
    Healthy,
    Failed { reason: String },
}

impl Verdict {
    pub fn is_healthy(&self) -> bool {
        matches!(self, Verdict::Healthy)
    }

    fn failed(reason: impl Into<String>) -> Self {
        Verdict::Failed {
            reason: reason.into(),
        }
    }
}

/// Longest piece of consumer-supplied text quoted in a reason.
const QUOTE_LIMIT: usize = 64;

/// Judge a probe invocation.
pub fn judge(invocation: &ProbeInvocation<'_>) -> Verdict {
    if let Some(error) = invocation.function_error {
        return Verdict::failed(format!("function error: {}", quote(error)));
    }
    if !invocation.reports_batch_item_failures {
        // Without ReportBatchItemFailures the event source only looks at
        // whether the invocation errored.
        return Verdict::Healthy;
    }
    judge_batch_response(invocation.payload, invocation.message_id)
}

impl ProbeInvocation<'_> {
    /// Same as [`judge`].
    pub fn verdict(&self) -> Verdict {
        judge(self)
    }
}

fn judge_batch_response(payload: &[u8], message_id: &str) -> Verdict {
    // An empty response is an empty EventResponse: complete success.
    if payload.is_empty() {
        return Verdict::Healthy;
    }
    let response: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(_) => return Verdict::failed("response is not valid JSON"),
    };
    let failures = match &response {
        Value::Null => return Verdict::Healthy,
        Value::Object(map) => match map.get("batchItemFailures") {
            None | Some(Value::Null) => return Verdict::Healthy,
            Some(Value::Array(items)) => items,
            Some(_) => return Verdict::failed("batchItemFailures is not a list"),
        },
        // Not an SQSBatchResponse at all; AWS documents no rule, so be safe.
        _ => return Verdict::failed("response is not a JSON object"),
    };
    if failures.is_empty() {
        return Verdict::Healthy;
    }

    // Any malformed entry makes the whole batch a failure, so check them all
    // before looking for the probe's id.
    let mut ids = Vec::with_capacity(failures.len());
    for item in failures {
        match item.get("itemIdentifier") {
            Some(Value::String(id)) if !id.is_empty() => ids.push(id.as_str()),
            Some(Value::String(_)) => {
                return Verdict::failed("batchItemFailures entry has an empty itemIdentifier")
            }
            Some(Value::Null) => {
                return Verdict::failed("batchItemFailures entry has a null itemIdentifier")
            }
            Some(_) => {
                return Verdict::failed("batchItemFailures entry has a non-string itemIdentifier")
            }
            None => return Verdict::failed("batchItemFailures entry lacks itemIdentifier"),
        }
    }
    if let Some(unknown) = ids.iter().find(|id| **id != message_id) {
        return Verdict::failed(format!(
            "batchItemFailures names unknown message id {}",
            quote(unknown)
        ));
    }
    Verdict::failed("consumer reported the probe message as failed")
}

/// Quote consumer-supplied text, cut to a sane length on a char boundary.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ID: &str = "059f36b4-87a3-44ab-83d2-661975830a7d";

    fn with_payload(payload: &str) -> Verdict {
        judge(&ProbeInvocation {
            function_error: None,
            payload: payload.as_bytes(),
            reports_batch_item_failures: true,
            message_id: ID,
        })
    }

    fn assert_failed(v: Verdict, needle: &str) {
        match v {
            Verdict::Failed { reason } => {
                assert!(
                    reason.contains(needle),
                    "reason {reason:?} lacks {needle:?}"
                )
            }
            Verdict::Healthy => panic!("expected failure containing {needle:?}"),
        }
    }

    #[test]
    fn function_error_fails_even_with_a_clean_payload() {
        for error in ["Unhandled", "Handled"] {
            for reports in [false, true] {
                let v = judge(&ProbeInvocation {
                    function_error: Some(error),
                    payload: b"{}",
                    reports_batch_item_failures: reports,
                    message_id: ID,
                });
                assert_failed(v, error);
            }
        }
    }

    #[test]
    fn without_batch_item_failures_payload_is_ignored() {
        let payload = format!(r#"{{"batchItemFailures":[{{"itemIdentifier":"{ID}"}}]}}"#);
        for p in [payload.as_str(), "not json", ""] {
            let v = judge(&ProbeInvocation {
                function_error: None,
                payload: p.as_bytes(),
                reports_batch_item_failures: false,
                message_id: ID,
            });
            assert_eq!(v, Verdict::Healthy, "payload {p:?}");
        }
    }

    #[test]
    fn complete_success_shapes() {
        for p in [
            "",
            "null",
            "{}",
            r#"{"batchItemFailures":null}"#,
            r#"{"batchItemFailures":[]}"#,
            r#" { "other": 1 } "#,
        ] {
            assert_eq!(with_payload(p), Verdict::Healthy, "payload {p:?}");
        }
    }

    #[test]
    fn invalid_json_fails() {
        assert_failed(with_payload("{"), "not valid JSON");
        assert_failed(with_payload("   "), "not valid JSON");
        let v = judge(&ProbeInvocation {
            function_error: None,
            payload: &[0xff, 0xfe],
            reports_batch_item_failures: true,
            message_id: ID,
        });
        assert_failed(v, "not valid JSON");
    }

    #[test]
    fn non_object_response_fails() {
        for p in ["true", "\"ok\"", "[]", "3"] {
            assert_failed(with_payload(p), "not a JSON object");
        }
    }

    #[test]
    fn batch_item_failures_not_a_list_fails() {
        for p in [
            r#"{"batchItemFailures":{}}"#,
            r#"{"batchItemFailures":"x"}"#,
            r#"{"batchItemFailures":0}"#,
        ] {
            assert_failed(with_payload(p), "not a list");
        }
    }

    #[test]
    fn malformed_entries_fail() {
        assert_failed(with_payload(r#"{"batchItemFailures":[{}]}"#), "lacks");
        assert_failed(
            with_payload(r#"{"batchItemFailures":[{"ItemIdentifier":"x"}]}"#),
            "lacks",
        );
        assert_failed(with_payload(r#"{"batchItemFailures":["x"]}"#), "lacks");
        assert_failed(
            with_payload(r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#),
            "null",
        );
        assert_failed(
            with_payload(r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#),
            "empty",
        );
        assert_failed(
            with_payload(r#"{"batchItemFailures":[{"itemIdentifier":7}]}"#),
            "non-string",
        );
    }

    #[test]
    fn malformed_entry_wins_over_probe_id() {
        let p = format!(r#"{{"batchItemFailures":[{{"itemIdentifier":"{ID}"}},{{}}]}}"#);
        assert_failed(with_payload(&p), "lacks");
    }

    #[test]
    fn unknown_message_id_fails() {
        let v = with_payload(r#"{"batchItemFailures":[{"itemIdentifier":"someone-else"}]}"#);
        assert_failed(v, "unknown message id \"someone-else\"");
        let p = format!(
            r#"{{"batchItemFailures":[{{"itemIdentifier":"{ID}"}},{{"itemIdentifier":"other"}}]}}"#
        );
        assert_failed(with_payload(&p), "unknown message id \"other\"");
    }

    #[test]
    fn probe_id_reported_fails() {
        let p = format!(r#"{{"batchItemFailures":[{{"itemIdentifier":"{ID}"}}]}}"#);
        assert_failed(with_payload(&p), "probe message as failed");
        let twice = format!(
            r#"{{"batchItemFailures":[{{"itemIdentifier":"{ID}"}},{{"itemIdentifier":"{ID}"}}]}}"#
        );
        assert_failed(with_payload(&twice), "probe message as failed");
    }

    #[test]
    fn long_identifiers_are_truncated_in_reasons() {
        let long = "é".repeat(500);
        let p = format!(r#"{{"batchItemFailures":[{{"itemIdentifier":"{long}"}}]}}"#);
        match with_payload(&p) {
            Verdict::Failed { reason } => assert!(reason.chars().count() < 120, "{reason}"),
            Verdict::Healthy => panic!("expected failure"),
        }
    }

    #[test]
    fn serde_shape_is_choice_friendly() {
        assert_eq!(
            serde_json::to_value(Verdict::Healthy).ok(),
            Some(serde_json::json!({"verdict": "Healthy"}))
        );
        let failed = Verdict::Failed { reason: "x".into() };
        assert_eq!(
            serde_json::to_value(&failed).ok(),
            Some(serde_json::json!({"verdict": "Failed", "reason": "x"}))
        );
        let back: Verdict =
            serde_json::from_str(r#"{"verdict":"Failed","reason":"x"}"#).expect("deserialises");
        assert_eq!(back, failed);
    }

    proptest! {
        #[test]
        fn arbitrary_payload_never_panics(
            payload in proptest::collection::vec(any::<u8>(), 0..256),
            reports in any::<bool>(),
            id in ".{0,40}",
        ) {
            let _ = judge(&ProbeInvocation {
                function_error: None,
                payload: &payload,
                reports_batch_item_failures: reports,
                message_id: &id,
            });
        }

        #[test]
        fn arbitrary_json_like_payload_never_panics(payload in r#"[{}\[\]":,a-zA-Z0-9 ]{0,80}"#) {
            let _ = with_payload(&payload);
        }

        #[test]
        fn function_error_always_fails(
            error in ".{0,200}",
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            reports in any::<bool>(),
        ) {
            let v = judge(&ProbeInvocation {
                function_error: Some(&error),
                payload: &payload,
                reports_batch_item_failures: reports,
                message_id: ID,
            });
            prop_assert!(!v.is_healthy());
        }

        #[test]
        fn any_listed_identifier_fails(ids in proptest::collection::vec("[a-z0-9-]{1,12}", 1..5)) {
            let entries: Vec<Value> = ids.iter().map(|i| serde_json::json!({"itemIdentifier": i})).collect();
            let payload = serde_json::json!({"batchItemFailures": entries}).to_string();
            prop_assert!(!with_payload(&payload).is_healthy());
        }
    }
}
