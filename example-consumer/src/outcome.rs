//! Pure per-batch decisions: which records fail, and whether the whole
//! invocation fails. No I/O, no clock, no global RNG.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage};
use lambda_runtime::Diagnostic;
use thiserror::Error;

use crate::config::{Config, FailureRate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Processed,
    Failed,
}

impl Outcome {
    /// The value logged in the `outcome` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Failed => "failed",
        }
    }
}

/// Fails a record iff `draw < rate`; for a uniform draw in `[0, 1)` that is
/// probability `rate`. Rate 1 always fails and rate 0 never does, whatever the
/// draw (even out-of-range or NaN), so the extremes hold exactly.
pub fn outcome_for(rate: FailureRate, draw: f64) -> Outcome {
    let rate = rate.get();
    if rate >= 1.0 || (rate > 0.0 && draw < rate) {
        Outcome::Failed
    } else {
        Outcome::Processed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordOutcome<'a> {
    pub message_id: &'a str,
    pub outcome: Outcome,
}

/// Why the whole invocation fails; the event source mapping then retries
/// every record of the batch.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error(
        "simulated outage (SHOULD_ERROR is set): failing the whole batch of {batch_size} records"
    )]
    SimulatedOutage { batch_size: usize },
    #[error(
        "{count} of {batch_size} records have no messageId (record indexes {indexes:?}); \
         failing the whole batch because they cannot be listed in batchItemFailures",
        count = indexes.len()
    )]
    MissingMessageId {
        indexes: Vec<usize>,
        batch_size: usize,
    },
}

impl BatchError {
    /// Stable `errorType` reported to Lambda (instead of a Rust type path).
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::SimulatedOutage { .. } => "SimulatedOutage",
            Self::MissingMessageId { .. } => "MissingMessageId",
        }
    }
}

impl From<BatchError> for Diagnostic {
    fn from(error: BatchError) -> Self {
        Diagnostic {
            error_type: error.error_type().to_owned(),
            error_message: error.to_string(),
        }
    }
}

/// The message id usable as a batchItemFailures identifier; an empty id is
/// treated as missing because Lambda cannot match it to a record either.
pub fn message_id(record: &SqsMessage) -> Option<&str> {
    record.message_id.as_deref().filter(|id| !id.is_empty())
}

/// Indexes of records that have no usable messageId.
pub fn missing_message_ids(records: &[SqsMessage]) -> Vec<usize> {
    records
        .iter()
        .enumerate()
        .filter(|(_, record)| message_id(record).is_none())
        .map(|(index, _)| index)
        .collect()
}

/// Decides the fate of a batch. `draw` is called exactly once per record, in
/// order, and only when the batch is not failed as a whole. On success there is
/// one outcome per record, in record order.
pub fn decide_batch<'a>(
    config: &Config,
    records: &'a [SqsMessage],
    mut draw: impl FnMut() -> f64,
) -> Result<Vec<RecordOutcome<'a>>, BatchError> {
    let batch_size = records.len();
    if config.should_error {
        return Err(BatchError::SimulatedOutage { batch_size });
    }
    let missing = missing_message_ids(records);
    if !missing.is_empty() {
        return Err(BatchError::MissingMessageId {
            indexes: missing,
            batch_size,
        });
    }
    Ok(records
        .iter()
        .filter_map(|record| Some((record, message_id(record)?)))
        .map(|(record, message_id)| {
            let drawn = outcome_for(config.failure_rate, draw());
            RecordOutcome {
                message_id,
                outcome: if is_poison(config, record) {
                    Outcome::Failed
                } else {
                    drawn
                },
            }
        })
        .collect())
}

/// A record whose body carries the configured poison marker.
pub fn is_poison(config: &Config, record: &SqsMessage) -> bool {
    match (&config.poison_marker, &record.body) {
        (Some(marker), Some(body)) => body.contains(marker.as_str()),
        _ => false,
    }
}

/// Partial batch response listing the failed records by messageId.
pub fn batch_response(outcomes: &[RecordOutcome<'_>]) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.set_failures(
        outcomes
            .iter()
            .filter(|record| record.outcome == Outcome::Failed)
            .map(|record| record.message_id),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn record(message_id: Option<&str>) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = message_id.map(str::to_owned);
        record
    }

    fn records(ids: &[&str]) -> Vec<SqsMessage> {
        ids.iter().map(|id| record(Some(id))).collect()
    }

    fn config(rate: f64) -> Config {
        Config {
            failure_rate: FailureRate::new(rate).expect("valid rate in test"),
            ..Config::default()
        }
    }

    /// Yields the given draws in order and panics if asked for more, which
    /// catches calling `draw` more than once per record.
    fn draws(values: Vec<f64>) -> impl FnMut() -> f64 {
        let mut values = values.into_iter();
        move || values.next().expect("draw called more often than expected")
    }

    fn failed_ids(outcomes: &[RecordOutcome<'_>]) -> Vec<String> {
        batch_response(outcomes)
            .batch_item_failures
            .into_iter()
            .map(|failure| failure.item_identifier)
            .collect()
    }

    #[test]
    fn poison_records_always_fail_and_others_follow_the_rate() {
        let mut batch = records(&["good", "bad"]);
        batch[0].body = Some("fine".into());
        batch[1].body = Some("{\"poison\":true}".into());
        let config = Config {
            poison_marker: Some("poison".into()),
            ..Config::default()
        };
        let outcomes = decide_batch(&config, &batch, draws(vec![0.5, 0.5])).expect("ok");
        assert_eq!(failed_ids(&outcomes), vec!["bad".to_string()]);
        assert!(
            !is_poison(&Config::default(), &batch[1]),
            "no marker, no poison"
        );
    }

    #[test]
    fn outcome_for_compares_draw_to_rate() {
        let rate = FailureRate::new(0.3).expect("valid");
        assert_eq!(outcome_for(rate, 0.0), Outcome::Failed);
        assert_eq!(outcome_for(rate, 0.299), Outcome::Failed);
        assert_eq!(outcome_for(rate, 0.3), Outcome::Processed);
        assert_eq!(outcome_for(rate, 0.999), Outcome::Processed);
    }

    #[test]
    fn outcome_for_extremes_ignore_the_draw() {
        for draw in [0.0, 0.5, 0.999_999, 1.0, -1.0, 2.0, f64::NAN] {
            assert_eq!(outcome_for(FailureRate::ZERO, draw), Outcome::Processed);
            assert_eq!(outcome_for(FailureRate::ONE, draw), Outcome::Failed);
        }
    }

    #[test]
    fn rate_zero_fails_nothing() {
        let batch = records(&["a", "b", "c"]);
        let outcomes = decide_batch(&config(0.0), &batch, draws(vec![0.0; 3])).expect("ok");
        assert!(failed_ids(&outcomes).is_empty());
        assert!(outcomes.iter().all(|r| r.outcome == Outcome::Processed));
    }

    #[test]
    fn rate_one_fails_everything() {
        let batch = records(&["a", "b", "c"]);
        let outcomes = decide_batch(&config(1.0), &batch, draws(vec![0.999; 3])).expect("ok");
        assert_eq!(failed_ids(&outcomes), ["a", "b", "c"]);
    }

    #[test]
    fn deterministic_draws_fail_exact_subset_in_order() {
        let batch = records(&["m1", "m2", "m3", "m4", "m5"]);
        let outcomes =
            decide_batch(&config(0.5), &batch, draws(vec![0.9, 0.1, 0.5, 0.49, 0.0])).expect("ok");
        assert_eq!(
            outcomes,
            [
                RecordOutcome {
                    message_id: "m1",
                    outcome: Outcome::Processed
                },
                RecordOutcome {
                    message_id: "m2",
                    outcome: Outcome::Failed
                },
                RecordOutcome {
                    message_id: "m3",
                    outcome: Outcome::Processed
                },
                RecordOutcome {
                    message_id: "m4",
                    outcome: Outcome::Failed
                },
                RecordOutcome {
                    message_id: "m5",
                    outcome: Outcome::Failed
                },
            ]
        );
        assert_eq!(failed_ids(&outcomes), ["m2", "m4", "m5"]);
    }

    #[test]
    fn empty_batch_is_ok_and_draws_nothing() {
        let outcomes = decide_batch(&config(1.0), &[], draws(vec![])).expect("ok");
        assert!(outcomes.is_empty());
    }

    #[test]
    fn missing_message_id_fails_whole_batch_without_drawing() {
        let batch = vec![
            record(Some("a")),
            record(None),
            record(Some("c")),
            record(Some("")),
        ];
        let err = decide_batch(&config(0.5), &batch, draws(vec![])).expect_err("must fail");
        assert_eq!(
            err,
            BatchError::MissingMessageId {
                indexes: vec![1, 3],
                batch_size: 4
            }
        );
        assert_eq!(
            err.to_string(),
            "2 of 4 records have no messageId (record indexes [1, 3]); \
             failing the whole batch because they cannot be listed in batchItemFailures"
        );
    }

    #[test]
    fn should_error_fails_whole_batch_without_drawing() {
        let batch = records(&["a", "b"]);
        let config = Config {
            should_error: true,
            ..config(0.0)
        };
        assert_eq!(
            decide_batch(&config, &batch, draws(vec![])),
            Err(BatchError::SimulatedOutage { batch_size: 2 })
        );
    }

    #[test]
    fn diagnostic_has_stable_error_type() {
        let diagnostic = Diagnostic::from(BatchError::SimulatedOutage { batch_size: 3 });
        assert_eq!(diagnostic.error_type, "SimulatedOutage");
        assert_eq!(
            diagnostic.error_message,
            "simulated outage (SHOULD_ERROR is set): failing the whole batch of 3 records"
        );
        let diagnostic = Diagnostic::from(BatchError::MissingMessageId {
            indexes: vec![0],
            batch_size: 1,
        });
        assert_eq!(diagnostic.error_type, "MissingMessageId");
    }

    #[test]
    fn seeded_rng_fails_roughly_the_configured_fraction() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let ids: Vec<String> = (0..10_000).map(|i| format!("id-{i}")).collect();
        let batch: Vec<SqsMessage> = ids.iter().map(|id| record(Some(id))).collect();
        let outcomes = decide_batch(&config(0.3), &batch, || rng.random::<f64>()).expect("ok");
        let failed = failed_ids(&outcomes).len();
        // 0.3 * 10_000 with a standard deviation of ~46; ±300 is > 6 sigma.
        assert!((2_700..=3_300).contains(&failed), "failed {failed}");
    }

    fn batch_strategy() -> impl Strategy<Value = Vec<(String, f64)>> {
        // Ids are arbitrary non-empty strings; draws include out-of-range values.
        proptest::collection::vec(("[a-zA-Z0-9-]{1,20}", -0.5f64..1.5), 0..50)
    }

    proptest! {
        #[test]
        fn failures_are_a_subset_of_the_batch(batch in batch_strategy(), rate in 0.0f64..=1.0) {
            let (ids, values): (Vec<String>, Vec<f64>) = batch.into_iter().unzip();
            let batch: Vec<SqsMessage> = ids.iter().map(|id| record(Some(id))).collect();
            let config = config(rate);
            let outcomes = decide_batch(&config, &batch, draws(values)).expect("ids present");
            prop_assert_eq!(outcomes.len(), ids.len());
            let all: HashSet<&str> = ids.iter().map(String::as_str).collect();
            let failed = failed_ids(&outcomes);
            prop_assert!(failed.len() <= ids.len());
            for id in &failed {
                prop_assert!(all.contains(id.as_str()), "{} not in batch", id);
            }
        }

        #[test]
        fn rate_zero_is_none_and_rate_one_is_all(batch in batch_strategy()) {
            let (ids, values): (Vec<String>, Vec<f64>) = batch.into_iter().unzip();
            let batch: Vec<SqsMessage> = ids.iter().map(|id| record(Some(id))).collect();

            let none = decide_batch(&config(0.0), &batch, draws(values.clone())).expect("ok");
            prop_assert!(failed_ids(&none).is_empty());

            let all = decide_batch(&config(1.0), &batch, draws(values)).expect("ok");
            prop_assert_eq!(failed_ids(&all), ids);
        }

        #[test]
        fn higher_rate_never_fails_fewer_records(
            batch in batch_strategy(),
            a in 0.0f64..=1.0,
            b in 0.0f64..=1.0,
        ) {
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            let (ids, values): (Vec<String>, Vec<f64>) = batch.into_iter().unzip();
            let batch: Vec<SqsMessage> = ids.iter().map(|id| record(Some(id))).collect();
            let low = decide_batch(&config(low), &batch, draws(values.clone())).expect("ok");
            let high = decide_batch(&config(high), &batch, draws(values)).expect("ok");
            for (l, h) in low.iter().zip(&high) {
                prop_assert!(
                    !(l.outcome == Outcome::Failed && h.outcome == Outcome::Processed),
                    "{} failed at the lower rate only", l.message_id
                );
            }
        }

        #[test]
        fn any_missing_id_fails_the_batch(
            ids in proptest::collection::vec(proptest::option::of("[a-z0-9]{0,8}"), 1..30),
        ) {
            let batch: Vec<SqsMessage> = ids.iter().map(|id| record(id.as_deref())).collect();
            let expected: Vec<usize> = ids
                .iter()
                .enumerate()
                .filter(|(_, id)| id.as_deref().is_none_or(str::is_empty))
                .map(|(i, _)| i)
                .collect();
            let result = decide_batch(&config(0.5), &batch, || 0.0);
            if expected.is_empty() {
                prop_assert!(result.is_ok());
            } else {
                prop_assert_eq!(
                    result,
                    Err(BatchError::MissingMessageId { indexes: expected, batch_size: ids.len() })
                );
            }
        }
    }
}
