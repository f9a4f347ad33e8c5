//! The breaker's own workflow executions.

use crate::error::StepError;
use aws_sdk_sfn::error::ProvideErrorMetadata;
use aws_sdk_sfn::types::ExecutionStatus;

/// True while the execution runs; an execution Step Functions does not know has ended.
pub async fn is_running(sfn: &aws_sdk_sfn::Client, execution: &str) -> Result<bool, StepError> {
    match sfn
        .describe_execution()
        .execution_arn(execution)
        .send()
        .await
    {
        Ok(out) => Ok(*out.status() == ExecutionStatus::Running),
        Err(e) if e.code() == Some("ExecutionDoesNotExist") => Ok(false),
        Err(e) => Err(StepError::aws("DescribeExecution", e)),
    }
}
