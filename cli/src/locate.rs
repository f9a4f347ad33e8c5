//! Finding a deployed breaker by its stack name: the stack's outputs, and the controller's own
//! configuration (its environment), so that this command acts exactly as the controller does.

use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata};
use controller::adapters::attachments::Attachments;
use controller::core::attachment::Defaults;
use controller::core::deployment::deployment;
use controller::steps::{Context, Fleet};
use std::collections::HashMap;

/// The outputs every breaker stack has (infra/template.yaml).
const OUTPUTS: [&str; 4] = [
    "StateMachineArn",
    "AlarmName",
    "CircuitTableName",
    "ControllerFunctionName",
];

#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("stack {stack} does not exist (region {region})")]
    NoSuchStack { stack: String, region: String },
    #[error("stack {stack} is not an sqs-circuit-breaker stack: it has no {output} output")]
    NotABreaker { stack: String, output: &'static str },
    #[error("cannot reach AWS{endpoint}: {cause}")]
    Unreachable { endpoint: String, cause: String },
    #[error("{operation} on {resource}: {message}")]
    Aws {
        operation: &'static str,
        resource: String,
        message: String,
    },
    #[error("the controller {function} has an invalid configuration: {message}")]
    Config { function: String, message: String },
}

/// A deployed breaker: its stack's outputs and a context like the controller's own (its
/// built-in consumer's configuration, and its attachments table in `ctx.fleet`).
pub struct Breaker {
    pub state_machine_arn: String,
    pub ctx: Context,
}

fn classify<E, R>(
    operation: &'static str,
    resource: &str,
    endpoint: &Option<String>,
    error: aws_sdk_cloudformation::error::SdkError<E, R>,
) -> LocateError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_cloudformation::error::SdkError;
    match &error {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => LocateError::Unreachable {
            endpoint: endpoint
                .as_ref()
                .map(|e| format!(" at {e}"))
                .unwrap_or_default(),
            cause: DisplayErrorContext(&error).to_string(),
        },
        _ => LocateError::Aws {
            operation,
            resource: resource.to_string(),
            message: error
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| DisplayErrorContext(&error).to_string()),
        },
    }
}

pub async fn breaker(
    sdk: &aws_config::SdkConfig,
    stack: &str,
    endpoint: &Option<String>,
) -> Result<Breaker, LocateError> {
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "(none configured)".into());
    let cloudformation = aws_sdk_cloudformation::Client::new(sdk);
    let described = match cloudformation
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) if e.code() == Some("ValidationError") => {
            return Err(LocateError::NoSuchStack {
                stack: stack.to_string(),
                region,
            })
        }
        Err(e) => {
            return Err(classify(
                "cloudformation:DescribeStacks",
                stack,
                endpoint,
                e,
            ))
        }
    };
    let outputs: HashMap<&str, &str> = described
        .stacks()
        .first()
        .map(|s| {
            s.outputs()
                .iter()
                .filter_map(|o| Some((o.output_key()?, o.output_value()?)))
                .collect()
        })
        .unwrap_or_default();
    for output in OUTPUTS {
        if !outputs.contains_key(output) {
            return Err(LocateError::NotABreaker {
                stack: stack.to_string(),
                output,
            });
        }
    }
    let function = outputs["ControllerFunctionName"];
    let lambda = aws_sdk_lambda::Client::new(sdk);
    let configuration = lambda
        .get_function_configuration()
        .function_name(function)
        .send()
        .await
        .map_err(|e| classify("lambda:GetFunctionConfiguration", function, endpoint, e))?;
    let variables = configuration
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default();
    let lookup = |name: &str| variables.get(name).cloned();
    let attachments_table = lookup("ATTACHMENTS_TABLE").filter(|t| !t.trim().is_empty());
    // As the controller reads its environment at cold start: a built-in consumer, or none (a
    // fleet-only deployment), and the attachments table, if any.
    let found =
        deployment(lookup, attachments_table.is_some()).map_err(|e| LocateError::Config {
            function: function.to_string(),
            message: e.to_string(),
        })?;
    let mut ctx = Context::live(found.config, sdk);
    ctx.fleet = Fleet {
        defaults: Defaults::from_lookup(lookup),
        attachments: attachments_table.map(|table| Attachments {
            dynamodb: ctx.clients.dynamodb.clone(),
            table,
        }),
        fleet_only: found.fleet_only,
        // The operator's own credentials act on every consumer: `fleet::context`.
        roles: None,
        own: None,
    };
    Ok(Breaker {
        state_machine_arn: outputs["StateMachineArn"].to_string(),
        ctx,
    })
}
