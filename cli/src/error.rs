//! What can go wrong when the operator command reads or acts on a deployed breaker.

use controller::core::QueueArnError;
use controller::error::StepError;

#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// An AWS call failed, or found the breaker's resources not as expected (no mapping, a
    /// deleted one, ...): the controller's adapters say which.
    #[error(transparent)]
    Aws(#[from] StepError),
    /// No consumer, or not one the deployment guards, for `--consumer`.
    #[error(transparent)]
    Select(#[from] crate::fleet::SelectError),
    /// The controller's `QUEUE_ARN`, as its environment holds it, is invalid.
    #[error("configuration: {0}")]
    QueueArn(#[from] QueueArnError),
    /// The queue's redrive policy names no SQS queue.
    #[error("the redrive policy's {arn}: {source}")]
    DeadLetterQueue {
        arn: String,
        #[source]
        source: QueueArnError,
    },
}
