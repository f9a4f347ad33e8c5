//! The live view of a deployed breaker: what changed since the last reading (the circuit, the
//! consumer's mapping, the alarm, the queue, each execution's steps), as the operator command's
//! `watch` and the demo print it. Reading is one AWS round per tick ([`Watch::tick`]); deciding
//! what changed is pure ([`Seen::changes`], in [`changes`]).

pub mod changes;

pub use changes::{narrate, short, steps_of, Change, Execution, Reading, Seen, Step};

use crate::error::OperatorError;
use controller::adapters::alarm;
use controller::adapters::execution::{self, HistoryRead};
use controller::adapters::mapping;
use controller::adapters::queue;
use controller::error::StepError;
use controller::steps::Context;
use std::collections::HashSet;

/// The states an execution entered, in order, with their outputs.
pub async fn steps(sfn: &aws_sdk_sfn::Client, execution: &str) -> Result<Vec<Step>, OperatorError> {
    Ok(steps_of(
        &execution::history(sfn, execution, HistoryRead::ALL).await?,
    ))
}

/// A live view of one breaker.
pub struct Watch {
    /// Executions not to show (ended before the watch began).
    ignore: HashSet<String>,
    /// Show only the executions for this consumer (`None`: every execution).
    only: Option<String>,
    mapping: Option<String>,
    queue_url: Option<String>,
    pub seen: Seen,
}

/// The newest executions of the state machine (one page, newest first) and their statuses.
async fn newest_executions(
    ctx: &Context,
    state_machine_arn: &str,
) -> Result<Vec<(String, String)>, StepError> {
    let newest = execution::list(&ctx.clients.sfn, state_machine_arn, None, Some(100)).await?;
    Ok(newest
        .iter()
        .map(|e| {
            (
                e.execution_arn().to_string(),
                e.status().as_str().to_string(),
            )
        })
        .collect())
}

impl Watch {
    /// A watch that shows none of `ignore`'s executions.
    pub fn new(ignore: HashSet<String>) -> Watch {
        Watch {
            ignore,
            only: None,
            mapping: None,
            queue_url: None,
            seen: Seen::default(),
        }
    }

    /// This watch, showing only the executions whose input is for consumer `id`
    /// (`crate::fleet::is_for`), each input read once.
    pub fn only(self, id: Option<&str>) -> Watch {
        Watch {
            only: id.map(str::to_string),
            ..self
        }
    }

    /// A watch from now on: executions that already ended are not shown; running ones are,
    /// from their start.
    pub async fn from_now(ctx: &Context, state_machine_arn: &str) -> Result<Watch, OperatorError> {
        let ended = newest_executions(ctx, state_machine_arn)
            .await?
            .into_iter()
            .filter(|(_, status)| status != "RUNNING")
            .map(|(arn, _)| arn)
            .collect();
        Ok(Watch::new(ended))
    }

    /// Reads the breaker once and returns the reading and what changed.
    pub async fn tick(
        &mut self,
        ctx: &Context,
        state_machine_arn: &str,
    ) -> Result<(Reading, Vec<Change>), OperatorError> {
        let uuid = match &self.mapping {
            Some(uuid) => uuid.clone(),
            None => {
                let found = mapping::find(
                    &ctx.clients.lambda,
                    &ctx.config.queue_arn,
                    &ctx.config.consumer_function,
                )
                .await?;
                self.mapping = Some(found.uuid.clone());
                found.uuid
            }
        };
        let mapping = match mapping::get(&ctx.clients.lambda, &uuid).await {
            // The cap shows the slow start's ramp.
            Ok(mapping::Mapping {
                state,
                maximum_concurrency: Some(cap),
                ..
            }) => format!("{state}, MaximumConcurrency {cap}"),
            Ok(m) => m.state,
            Err(StepError::MappingDeleted { .. }) => "Deleted".into(),
            Err(e) => return Err(e.into()),
        };
        let circuit = ctx.store().get(&uuid).await?.map(|r| (r.state, r.reason));
        let alarm = alarm::state(&ctx.clients.cloudwatch, &ctx.config.alarm_name).await?;
        let queue_url = match &self.queue_url {
            Some(url) => url.clone(),
            None => {
                let url = crate::status::queue_url(ctx).await?;
                self.queue_url = Some(url.clone());
                url
            }
        };
        let (queue, _) = queue::depth(&ctx.clients.sqs, &queue_url).await?;
        let mut executions = Vec::new();
        for (arn, status) in newest_executions(ctx, state_machine_arn).await? {
            if self.ignore.contains(&arn) {
                continue;
            }
            if let Some(id) = &self.only {
                if !self.seen.statuses().contains_key(&arn)
                    && !crate::fleet::is_for(&execution::input(&ctx.clients.sfn, &arn).await?, id)
                {
                    self.ignore.insert(arn);
                    continue;
                }
            }
            // An execution that ended and was read after it ended has nothing new to say.
            let known = self.seen.statuses().get(&arn);
            if known.is_some_and(|k| k == &status) && status != "RUNNING" {
                continue;
            }
            let steps = steps(&ctx.clients.sfn, &arn).await?;
            executions.push(Execution { arn, status, steps });
        }
        // Oldest first, so that an execution's start is told before a later one's.
        executions.reverse();
        let reading = Reading {
            circuit,
            mapping,
            alarm,
            queue,
            executions,
        };
        let changes = self.seen.changes(&reading);
        Ok((reading, changes))
    }
}
