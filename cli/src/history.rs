//! `history`: the circuits opened since a time, one per execution of the workflow that
//! opened one (of one consumer, in a fleet). How each ended is decided in
//! `controller::core::operator`.

use crate::error::OperatorError;
use aws_sdk_sfn::types::ExecutionStatus;
use controller::adapters::execution::{self, HistoryRead};
use controller::core::operator::{probes, Ending};
use controller::steps::Context;
use serde::Serialize;

/// One past (or current) circuit: one execution of the workflow that opened it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PastCircuit {
    pub execution: String,
    pub opened_ms: u64,
    pub ended_ms: Option<u64>,
    pub probes: usize,
    pub ending: Ending,
}

fn millis(t: &aws_smithy_types::DateTime) -> Option<u64> {
    t.to_millis().ok().map(|ms| ms.max(0) as u64)
}

/// The circuits opened since `since_ms`, newest first; with `only`, those of the executions
/// whose input is for that consumer (`crate::fleet::is_for`).
pub async fn history(
    ctx: &Context,
    state_machine_arn: &str,
    since_ms: u64,
    only: Option<&str>,
) -> Result<Vec<PastCircuit>, OperatorError> {
    let sfn = &ctx.clients.sfn;
    let mut past = Vec::new();
    for listed in execution::list(sfn, state_machine_arn, Some(since_ms), None).await? {
        if let Some(id) = only {
            let input = execution::input(sfn, listed.execution_arn()).await?;
            if !crate::fleet::is_for(&input, id) {
                continue;
            }
        }
        let without_data = HistoryRead {
            with_data: false,
            ..HistoryRead::ALL
        };
        let states: Vec<String> = execution::history(sfn, listed.execution_arn(), without_data)
            .await?
            .iter()
            .filter_map(|e| e.state_entered_event_details())
            .map(|d| d.name().to_string())
            .collect();
        let running = *listed.status() == ExecutionStatus::Running;
        let ending = Ending::of(&states, running);
        if ending.opened() {
            past.push(PastCircuit {
                execution: listed.execution_arn().to_string(),
                opened_ms: millis(listed.start_date()).unwrap_or(0),
                ended_ms: listed.stop_date().and_then(millis),
                probes: probes(&states),
                ending,
            });
        }
    }
    Ok(past)
}
