//! Example SQS consumer for trying the circuit breaker: it can simulate an
//! outage, partial batch failures and latency, driven by environment variables
//! (see [`config`]). Decisions live in [`config`] and [`outcome`]; [`handle`]
//! only sleeps, logs and turns decisions into a response. Each record's log
//! line carries its content [`fingerprint`], so tests can check that every
//! message arrived once and unchanged, even after the rejitter re-sent it under
//! a new message id.

pub mod config;
pub mod fingerprint;
pub mod outcome;

/// The JSON log setup every Lambda of the breaker shares.
pub use controller::logging;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

pub use config::{Config, ConfigError, FailureRate};
pub use outcome::{batch_response, decide_batch, outcome_for, BatchError, Outcome, RecordOutcome};

/// Handles one SQS batch. `draw` supplies one uniform `[0, 1)` number per
/// record (e.g. `rand::random::<f64>`); tests pass fixed values.
pub async fn handle(
    config: &Config,
    event: SqsEvent,
    draw: impl FnMut() -> f64,
) -> Result<SqsBatchResponse, BatchError> {
    let batch_size = event.records.len();
    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    let outcomes = match decide_batch(config, &event.records, draw) {
        Ok(outcomes) => outcomes,
        Err(error) => {
            log_batch_error(&error);
            return Err(error);
        }
    };
    // `decide_batch` returns one outcome per record, in record order.
    for (record, decided) in event.records.iter().zip(&outcomes) {
        let (message_id, outcome) = (decided.message_id, decided.outcome.as_str());
        let fingerprint = fingerprint::of_record(record);
        let fingerprint = fingerprint.as_str();
        // How often SQS handed this message out, and on a FIFO queue where it sits in its
        // group: tests read them to check receive counts and per-group order. Absent
        // attributes are left out of the line.
        let attribute = |name: &str| record.attributes.get(name).map(String::as_str);
        let receive_count = attribute("ApproximateReceiveCount");
        let message_group_id = attribute("MessageGroupId");
        let sequence_number = attribute("SequenceNumber");
        let deduplication_id = attribute("MessageDeduplicationId");
        match decided.outcome {
            Outcome::Processed => {
                tracing::info!(
                    message_id,
                    outcome,
                    fingerprint,
                    receive_count,
                    message_group_id,
                    sequence_number,
                    deduplication_id,
                    batch_size,
                    "record processed"
                )
            }
            Outcome::Failed => {
                tracing::warn!(
                    message_id,
                    outcome,
                    fingerprint,
                    receive_count,
                    message_group_id,
                    sequence_number,
                    deduplication_id,
                    batch_size,
                    "record failed (simulated)"
                )
            }
        }
    }
    let response = batch_response(&outcomes);
    tracing::info!(
        batch_size,
        failed_count = response.batch_item_failures.len(),
        "batch done"
    );
    Ok(response)
}

fn log_batch_error(error: &BatchError) {
    let error_type = error.error_type();
    match error {
        BatchError::SimulatedOutage { batch_size } => {
            tracing::error!(batch_size, error_type, error = %error, "batch failed");
        }
        BatchError::MissingMessageId {
            indexes,
            batch_size,
        } => {
            // One line per bad record so each is searchable on its own.
            for &record_index in indexes {
                tracing::error!(
                    record_index,
                    batch_size,
                    error_type,
                    "record has no messageId"
                );
            }
            tracing::error!(batch_size, error_type, error = %error, "batch failed");
        }
    }
}
