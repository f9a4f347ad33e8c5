//! The errors a step reports to Step Functions. The variant name is the error name the
//! state machine's Retry and Catch match on, so these names are part of the workflow contract.

use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::error::SdkError;
use lambda_runtime::Diagnostic;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Not an ALARM transition of the breaker's alarm; nothing was touched. Not retried.
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// No event source mapping from the queue to the consumer. Not retried.
    #[error("no event source mapping from {queue} to {function}")]
    MappingNotFound { queue: String, function: String },
    /// More than one mapping from the queue to the consumer; the breaker will not guess.
    #[error("{count} event source mappings from {queue} to {function}; expected exactly one")]
    SeveralMappings {
        queue: String,
        function: String,
        count: usize,
    },
    /// The mapping the circuit names no longer exists (deleted by a deploy or a person).
    #[error("event source mapping {mapping} no longer exists")]
    MappingDeleted { mapping: String },
    /// The mapping did not reach the wanted state in time. Retried.
    #[error("mapping {mapping} is {actual}, still not {wanted} after {seconds}s")]
    MappingNotSettled {
        mapping: String,
        wanted: String,
        actual: String,
        seconds: u32,
    },
    /// Throttling, a 5xx or a network failure. Retried.
    #[error("transient AWS error in {operation}: {message}")]
    Transient { operation: String, message: String },
    /// Any other AWS error (access denied, validation, ...). Goes to the failsafe.
    #[error("AWS error in {operation}: {message}")]
    Aws { operation: String, message: String },
    /// The circuit-state store says another execution owns this circuit.
    #[error("execution {owner} owns the circuit of mapping {mapping}, not this one")]
    NotOwner { mapping: String, owner: String },
    /// The controller's configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// Anything else that cannot go on (malformed data from AWS, ...).
    #[error("{0}")]
    Fatal(String),
}

impl StepError {
    /// The error name Step Functions sees.
    pub fn name(&self) -> &'static str {
        match self {
            StepError::InvalidEvent(_) => "InvalidEvent",
            StepError::MappingNotFound { .. } => "MappingNotFound",
            StepError::SeveralMappings { .. } => "SeveralMappings",
            StepError::MappingDeleted { .. } => "MappingDeleted",
            StepError::MappingNotSettled { .. } => "MappingNotSettled",
            StepError::Transient { .. } => "Transient",
            StepError::Aws { .. } => "AwsError",
            StepError::NotOwner { .. } => "NotOwner",
            StepError::Config(_) => "ConfigError",
            StepError::Fatal(_) => "Fatal",
        }
    }

    /// Classifies an SDK error: throttling, server errors and network failures are
    /// transient; everything else is not.
    pub fn aws<E>(operation: &str, err: SdkError<E, HttpResponse>) -> StepError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        // A service error's code and message say it all; other failures need their chain.
        let message = match err.as_service_error() {
            Some(service) if service.code().is_some() => format!(
                "{}: {}",
                service.code().unwrap_or_default(),
                service.message().unwrap_or("no message")
            ),
            _ => aws_smithy_types::error::display::DisplayErrorContext(&err).to_string(),
        };
        let operation = operation.to_string();
        let transient = match &err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => true,
            SdkError::ServiceError(service) => {
                is_throttling(service.err().code()) || service.raw().status().is_server_error()
            }
            _ => false,
        };
        if transient {
            StepError::Transient { operation, message }
        } else {
            StepError::Aws { operation, message }
        }
    }
}

fn is_throttling(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "Throttling"
                | "ThrottlingException"
                | "ThrottledException"
                | "TooManyRequestsException"
                | "RequestLimitExceeded"
                | "RequestThrottled"
                | "RequestThrottledException"
                | "ProvisionedThroughputExceededException"
                | "TransactionInProgressException"
                | "ServiceUnavailable"
                | "ServiceUnavailableException"
                | "InternalFailure"
                | "InternalServerError"
                | "ServiceException"
                | "EC2ThrottledException"
                | "ResourceConflictException"
                // A mapping mid-transition refuses updates; it settles within seconds.
                | "ResourceInUseException"
        )
    )
}

impl From<StepError> for Diagnostic {
    fn from(err: StepError) -> Diagnostic {
        Diagnostic {
            error_type: err.name().to_string(),
            error_message: err.to_string(),
        }
    }
}
