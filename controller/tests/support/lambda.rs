//! Lambda rules: the consumer's and the rejitter's mappings, the consumer itself.
use super::*;

// ---------------------------------------------------------------------------------------------
// Lambda

fn mapping_config(uuid: &str, state: &str) -> EventSourceMappingConfiguration {
    EventSourceMappingConfiguration::builder()
        .uuid(uuid)
        .function_arn(FUNCTION_ARN)
        .event_source_arn(QUEUE_ARN)
        .state(state)
        .batch_size(10)
        .maximum_batching_window_in_seconds(5)
        .function_response_types(FunctionResponseType::ReportBatchItemFailures)
        .scaling_config(ScalingConfig::builder().maximum_concurrency(20).build())
        .build()
}

/// ListEventSourceMappings for the queue and the consumer, answering one mapping per state.
pub fn list_mappings(states: &[&str]) -> Rule {
    list_mappings_page(None, None, states)
}

/// One page of ListEventSourceMappings: answers the request carrying `marker` with one
/// mapping per state (the first one is `UUID`) and `next_marker`.
pub fn list_mappings_page(
    marker: Option<&'static str>,
    next_marker: Option<&'static str>,
    states: &[&str],
) -> Rule {
    use aws_sdk_lambda::operation::list_event_source_mappings::ListEventSourceMappingsOutput;
    let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
    mock!(aws_sdk_lambda::Client::list_event_source_mappings)
        .match_requests(move |r| {
            r.event_source_arn() == Some(QUEUE_ARN)
                && r.function_name() == Some(FUNCTION)
                && r.marker() == marker
        })
        .then_output(move || {
            let mappings = states
                .iter()
                .enumerate()
                .map(|(i, state)| {
                    let uuid = if i == 0 {
                        UUID.to_string()
                    } else {
                        format!("{UUID}-{i}")
                    };
                    mapping_config(&uuid, state)
                })
                .collect();
            ListEventSourceMappingsOutput::builder()
                .set_event_source_mappings(Some(mappings))
                .set_next_marker(next_marker.map(str::to_string))
                .build()
        })
}

/// GetEventSourceMapping of the consumer's mapping answering the states in turn, the last one
/// from then on; the mapping reports batch item failures.
pub fn get_mapping(states: &[&str]) -> Rule {
    get_mapping_with(&[FunctionResponseType::ReportBatchItemFailures], states)
}

/// GetEventSourceMapping of the consumer's mapping with these response types (as a deploy
/// during the outage may have set them), answering the states in turn.
pub fn get_mapping_with(response_types: &[FunctionResponseType], states: &[&str]) -> Rule {
    use aws_sdk_lambda::operation::get_event_source_mapping::GetEventSourceMappingOutput;
    let mut sequence = mock!(aws_sdk_lambda::Client::get_event_source_mapping)
        .match_requests(|r| r.uuid() == Some(UUID))
        .sequence();
    for state in states {
        let state = state.to_string();
        let types = response_types.to_vec();
        sequence = sequence.output(move || {
            GetEventSourceMappingOutput::builder()
                .uuid(UUID)
                .function_arn(FUNCTION_ARN)
                .event_source_arn(QUEUE_ARN)
                .state(&state)
                .batch_size(10)
                .maximum_batching_window_in_seconds(5)
                .set_function_response_types(Some(types.clone()))
                .build()
        });
    }
    sequence.repeatedly().build()
}

/// GetEventSourceMapping of a consumer's mapping that was deleted.
pub fn mapping_deleted() -> Rule {
    use aws_sdk_lambda::operation::get_event_source_mapping::GetEventSourceMappingError;
    use aws_sdk_lambda::types::error::ResourceNotFoundException;
    mock!(aws_sdk_lambda::Client::get_event_source_mapping)
        .match_requests(|r| r.uuid() == Some(UUID))
        .then_error(|| {
            GetEventSourceMappingError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("The resource you requested does not exist.")
                    .meta(
                        aws_sdk_lambda::error::ErrorMetadata::builder()
                            .code("ResourceNotFoundException")
                            .build(),
                    )
                    .build(),
            )
        })
}

/// An UpdateEventSourceMapping of `uuid` that sets Enabled to `enabled` and nothing else: no
/// batch size, window, response types, scaling or filter, which belong to the mapping's
/// owners.
pub fn only_switches(
    uuid: &'static str,
    enabled: bool,
) -> impl Fn(&UpdateEventSourceMappingInput) -> bool + Send + Sync + 'static {
    let only_enabled = UpdateEventSourceMappingInput::builder()
        .uuid(uuid)
        .enabled(enabled)
        .build()
        .expect("valid input");
    move |r| *r == only_enabled
}

fn switched(uuid: &str, enabled: bool) -> UpdateEventSourceMappingOutput {
    UpdateEventSourceMappingOutput::builder()
        .uuid(uuid)
        .state(if enabled { "Enabling" } else { "Disabling" })
        .build()
}

/// UpdateEventSourceMapping that only switches the consumer's mapping off.
pub fn disable_mapping() -> Rule {
    mock!(aws_sdk_lambda::Client::update_event_source_mapping)
        .match_requests(only_switches(UUID, false))
        .then_output(|| switched(UUID, false))
}

pub fn disable_mapping_fails(
    error: impl Fn() -> UpdateEventSourceMappingError + Send + Sync + 'static,
) -> Rule {
    mock!(aws_sdk_lambda::Client::update_event_source_mapping)
        .match_requests(only_switches(UUID, false))
        .then_error(error)
}

/// UpdateEventSourceMapping that only switches the consumer's mapping on: ending a circuit
/// gives back `Enabled: true` and nothing else.
pub fn enable_mapping() -> Rule {
    mock!(aws_sdk_lambda::Client::update_event_source_mapping)
        .match_requests(only_switches(UUID, true))
        .then_output(|| switched(UUID, true))
}

/// Switching the consumer's mapping on: refused as in use the first time, then accepted.
pub fn enable_mapping_in_use_once() -> Rule {
    mock!(aws_sdk_lambda::Client::update_event_source_mapping)
        .match_requests(only_switches(UUID, true))
        .sequence()
        .error(resource_in_use)
        .output(|| switched(UUID, true))
        .repeatedly()
        .build()
}

/// Lambda's answer to an update of a mapping in a transitional state.
pub fn resource_in_use() -> UpdateEventSourceMappingError {
    use aws_sdk_lambda::types::error::ResourceInUseException;
    UpdateEventSourceMappingError::ResourceInUseException(
        ResourceInUseException::builder()
            .message("The event source mapping is currently in a transitional state")
            .meta(
                aws_sdk_lambda::error::ErrorMetadata::builder()
                    .code("ResourceInUseException")
                    .build(),
            )
            .build(),
    )
}

/// ListEventSourceMappings for the queue and the rejitter, answering one mapping per state
/// (the first one is `REJITTER_UUID`).
pub fn list_rejitter_mappings(states: &[&str]) -> Rule {
    use aws_sdk_lambda::operation::list_event_source_mappings::ListEventSourceMappingsOutput;
    let states: Vec<String> = states.iter().map(|s| s.to_string()).collect();
    mock!(aws_sdk_lambda::Client::list_event_source_mappings)
        .match_requests(|r| {
            r.event_source_arn() == Some(QUEUE_ARN)
                && r.function_name() == Some(REJITTER_FUNCTION)
                && r.marker().is_none()
        })
        .then_output(move || {
            let mappings = states
                .iter()
                .enumerate()
                .map(|(i, state)| {
                    let uuid = if i == 0 {
                        REJITTER_UUID.to_string()
                    } else {
                        format!("{REJITTER_UUID}-{i}")
                    };
                    EventSourceMappingConfiguration::builder()
                        .uuid(uuid)
                        .function_arn(REJITTER_FUNCTION_ARN)
                        .event_source_arn(QUEUE_ARN)
                        .state(state)
                        .batch_size(10)
                        .build()
                })
                .collect();
            ListEventSourceMappingsOutput::builder()
                .set_event_source_mappings(Some(mappings))
                .build()
        })
}

/// GetEventSourceMapping of the rejitter's mapping answering the states in turn, the last one
/// from then on.
pub fn get_rejitter_mapping(states: &[&str]) -> Rule {
    use aws_sdk_lambda::operation::get_event_source_mapping::GetEventSourceMappingOutput;
    let mut sequence = mock!(aws_sdk_lambda::Client::get_event_source_mapping)
        .match_requests(|r| r.uuid() == Some(REJITTER_UUID))
        .sequence();
    for state in states {
        let state = state.to_string();
        sequence = sequence.output(move || {
            GetEventSourceMappingOutput::builder()
                .uuid(REJITTER_UUID)
                .function_arn(REJITTER_FUNCTION_ARN)
                .event_source_arn(QUEUE_ARN)
                .state(&state)
                .batch_size(10)
                .build()
        });
    }
    sequence.repeatedly().build()
}

/// UpdateEventSourceMapping of the rejitter's mapping that sets Enabled to `enabled` and
/// nothing else.
pub fn switch_rejitter(enabled: bool) -> Rule {
    mock!(aws_sdk_lambda::Client::update_event_source_mapping)
        .match_requests(only_switches(REJITTER_UUID, enabled))
        .then_output(move || switched(REJITTER_UUID, enabled))
}

/// GetFunctionConfiguration of the mapping's function (qualifier included).
pub fn function_configuration() -> Rule {
    use aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput;
    mock!(aws_sdk_lambda::Client::get_function_configuration)
        .match_requests(|r| r.function_name() == Some(FUNCTION_ARN))
        .then_output(|| {
            GetFunctionConfigurationOutput::builder()
                .function_name(FUNCTION)
                .function_arn(FUNCTION_ARN)
                .timeout(CONSUMER_TIMEOUT)
                .build()
        })
}

/// A synchronous Invoke of `function` answered with `function_error` and `payload`.
pub fn invoke(
    function: &'static str,
    function_error: Option<&'static str>,
    payload: &'static str,
) -> Rule {
    use aws_sdk_lambda::operation::invoke::InvokeOutput;
    use aws_sdk_lambda::primitives::Blob;
    mock!(aws_sdk_lambda::Client::invoke)
        .match_requests(move |r| {
            r.function_name() == Some(function)
                && r.invocation_type() == Some(&InvocationType::RequestResponse)
        })
        .then_output(move || {
            InvokeOutput::builder()
                .status_code(200)
                .set_function_error(function_error.map(str::to_string))
                .payload(Blob::new(payload))
                .build()
        })
}

/// The payload an Invoke request carried, as JSON.
pub fn invoke_payload(r: &aws_sdk_lambda::operation::invoke::InvokeInput) -> Value {
    r.payload()
        .and_then(|p| serde_json::from_slice(p.as_ref()).ok())
        .unwrap_or(Value::Null)
}
