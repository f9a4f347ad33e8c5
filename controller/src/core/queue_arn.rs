//! SQS queue ARNs, as the controller and the rejitter read their `QUEUE_ARN` (and the
//! operator command a redrive policy's target).

use std::fmt;

/// SQS limit on queue name length, `.fifo` suffix included.
pub const MAX_QUEUE_NAME_LEN: usize = 80;

/// Why a value is not an SQS queue ARN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "QUEUE_ARN={value:?} is not an SQS queue ARN \
     (arn:<partition>:sqs:<region>:<12-digit account>:<queue name>): {reason}"
)]
pub struct QueueArnError {
    pub value: String,
    pub reason: &'static str,
}

/// The parts of an SQS queue ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueArn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub name: String,
}

impl QueueArn {
    /// Parse `arn:<partition>:sqs:<region>:<12 digits>:<name>`.
    pub fn parse(arn: &str) -> Result<QueueArn, QueueArnError> {
        let invalid = |reason| QueueArnError {
            value: arn.to_owned(),
            reason,
        };
        let parts: Vec<&str> = arn.split(':').collect();
        let [prefix, partition, service, region, account, name] = parts[..] else {
            return Err(invalid("expected six colon-separated fields"));
        };
        if prefix != "arn" {
            return Err(invalid("does not start with \"arn:\""));
        }
        if !is_identifier(partition) {
            return Err(invalid("partition is empty or malformed"));
        }
        if service != "sqs" {
            return Err(invalid("service is not \"sqs\""));
        }
        if !is_identifier(region) {
            return Err(invalid("region is empty or malformed"));
        }
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("account is not 12 digits"));
        }
        if !is_queue_name(name) {
            return Err(invalid(
                "queue name must be 1-80 letters, digits, '-' or '_', optionally ending in .fifo",
            ));
        }
        Ok(QueueArn {
            partition: partition.to_owned(),
            region: region.to_owned(),
            account: account.to_owned(),
            name: name.to_owned(),
        })
    }

    pub fn is_fifo(&self) -> bool {
        self.name.ends_with(".fifo")
    }
}

impl fmt::Display for QueueArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:sqs:{}:{}:{}",
            self.partition, self.region, self.account, self.name
        )
    }
}

/// Partition and region: lowercase letters, digits and hyphens.
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_queue_name(name: &str) -> bool {
    let stem = name.strip_suffix(".fifo").unwrap_or(name);
    !stem.is_empty()
        && name.len() <= MAX_QUEUE_NAME_LEN
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:sqs:eu-west-1:123456789012:orders";

    #[test]
    fn queue_arn_parses() {
        let q = QueueArn::parse(ARN).expect("valid");
        assert_eq!(
            q,
            QueueArn {
                partition: "aws".into(),
                region: "eu-west-1".into(),
                account: "123456789012".into(),
                name: "orders".into(),
            }
        );
        assert_eq!(q.to_string(), ARN);
        assert!(!q.is_fifo());
        let cn = QueueArn::parse("arn:aws-cn:sqs:cn-north-1:000000000000:a_b-C9").expect("valid");
        assert_eq!(cn.name, "a_b-C9");
    }

    #[test]
    fn queue_arn_rejections() {
        let long = format!("arn:aws:sqs:eu-west-1:123456789012:{}", "q".repeat(81));
        let long_fifo = format!("arn:aws:sqs:eu-west-1:123456789012:{}.fifo", "q".repeat(76));
        let cases = [
            ("", "six"),
            ("orders", "six"),
            ("arn:aws:sqs:eu-west-1:123456789012", "six"),
            ("arn:aws:sqs:eu-west-1:123456789012:orders:extra", "six"),
            ("arm:aws:sqs:eu-west-1:123456789012:orders", "arn:"),
            ("arn::sqs:eu-west-1:123456789012:orders", "partition"),
            ("arn:AWS:sqs:eu-west-1:123456789012:orders", "partition"),
            ("arn:aws:sns:eu-west-1:123456789012:orders", "sqs"),
            ("arn:aws:sqs::123456789012:orders", "region"),
            ("arn:aws:sqs:eu-west-1:12345678901:orders", "12 digits"),
            ("arn:aws:sqs:eu-west-1:1234567890123:orders", "12 digits"),
            ("arn:aws:sqs:eu-west-1:12345678901a:orders", "12 digits"),
            ("arn:aws:sqs:eu-west-1:123456789012:", "queue name"),
            ("arn:aws:sqs:eu-west-1:123456789012:.fifo", "queue name"),
            ("arn:aws:sqs:eu-west-1:123456789012:or ders", "queue name"),
            ("arn:aws:sqs:eu-west-1:123456789012:orders/x", "queue name"),
            (
                "arn:aws:sqs:eu-west-1:123456789012:orders.fif",
                "queue name",
            ),
            (long.as_str(), "queue name"),
            (long_fifo.as_str(), "queue name"),
        ];
        for (arn, needle) in cases {
            match QueueArn::parse(arn) {
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains(needle), "{arn:?}: {msg}");
                    assert!(msg.contains("QUEUE_ARN"), "{msg}");
                }
                other => panic!("{arn:?} gave {other:?}"),
            }
        }
        let exactly_80 = format!("arn:aws:sqs:eu-west-1:123456789012:{}.fifo", "q".repeat(75));
        assert!(QueueArn::parse(&exactly_80).is_ok());
    }
}
