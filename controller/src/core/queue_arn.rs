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
