//! A probe never spends a message's last receive.
//!
//! SQS moves a message to the dead-letter queue when a receive would take it past the queue's
//! `maxReceiveCount`. Every probe is one receive: a message a failed probe took to that count
//! would reach the DLQ on its next receive, for an outage that was not its fault. Such a
//! message goes back as a fresh copy (same body, attributes and trace header; receive count
//! 0); any other is hidden until about the next probe, keeping its count, so that a poison
//! message still reaches the DLQ through normal redrive once the consumer is back.

/// What happens to the message a failed probe took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveBack {
    /// Hide it until about the next probe; its receives left stay with it.
    Hide,
    /// Re-send it as a fresh copy and delete this one: it has no receive left.
    FreshCopy,
}

/// `receive_count` is the message's ApproximateReceiveCount after the probe's receive;
/// `max_receive_count` the queue's redrive policy, if it has one. FIFO queues keep the message
/// (a copy would go to the back of its group, out of order).
pub fn after_failed_probe(
    receive_count: u32,
    max_receive_count: Option<u32>,
    fifo: bool,
) -> GiveBack {
    match max_receive_count {
        Some(max) if !fifo && receive_count >= max => GiveBack::FreshCopy,
        _ => GiveBack::Hide,
    }
}

/// The `maxReceiveCount` of a queue's `RedrivePolicy` attribute (JSON), if any.
pub fn max_receive_count(redrive_policy: &str) -> Option<u32> {
    let policy: serde_json::Value = serde_json::from_str(redrive_policy).ok()?;
    match &policy["maxReceiveCount"] {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        // SQS hands it back as a string.
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_message_at_its_last_receive_goes_back_fresh() {
        assert_eq!(after_failed_probe(3, Some(3), false), GiveBack::FreshCopy);
        assert_eq!(after_failed_probe(2, Some(3), false), GiveBack::Hide);
        assert_eq!(after_failed_probe(7, None, false), GiveBack::Hide);
        // FIFO order first: the message keeps its place.
        assert_eq!(after_failed_probe(3, Some(3), true), GiveBack::Hide);
    }

    #[test]
    fn reads_the_redrive_policy_as_sqs_returns_it() {
        let arn = "arn:aws:sqs:us-east-1:123456789012:orders-dlq";
        let policy = format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"5"}}"#);
        assert_eq!(max_receive_count(&policy), Some(5));
        let policy = format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":3}}"#);
        assert_eq!(max_receive_count(&policy), Some(3));
        assert_eq!(max_receive_count(""), None);
        assert_eq!(max_receive_count("{}"), None);
    }

    proptest! {
        /// Whatever the counts, a message a failed probe hides keeps at least one receive for
        /// the consumer.
        #[test]
        fn a_hidden_message_always_keeps_a_receive(count in 1u32..100, max in 1u32..100) {
            if after_failed_probe(count, Some(max), false) == GiveBack::Hide {
                prop_assert!(count < max);
            }
        }
    }
}
