//! OpenCircuit: check the alarm event, take the circuit, disable the consumer's mapping and
//! wait until it is Disabled. This is the only step that looks the mapping up from the
//! configuration; every later step acts on what it records in the circuit item. The input
//! names the consumer: an attachment (`{"attachment": id, "event": …}`, its settings read from
//! the attachments table) or the deployment's built-in consumer (any other input).

use super::Context;
use crate::adapters::signals::Transition;
use crate::adapters::store::{Acquire, CircuitRecord, CLOSED, GAVE_UP, OPEN};
use crate::adapters::{alarm, execution, mapping, queue};
use crate::circuit::{Changed, Circuit, CircuitAttachment, MappingSnapshot, OpenStatus};
use crate::core::attachment::{route, Target};
use crate::core::composite::triggering_alarms;
use crate::core::hang::PROBE_VISIBILITY_MARGIN_SECONDS;
use crate::core::history::{task, EXECUTION_STARTED, FLOW_STATE};
use crate::core::old_errors::{evaluated_datapoints, only_old_errors};
use crate::core::operator::{OperatorOpen, HOLD_SECONDS};
use crate::core::rearm::{cooldown_seconds, is_retrip, recent_opens};
use crate::core::{alarm_transition, is_fresh, oldest_sent_ms, AlarmTransition, OwnAlarm};
use crate::error::StepError;
use serde_json::Value;
use std::time::{Duration, UNIX_EPOCH};

/// Mapping states that end in Enabled without anyone's action.
const SETTLING_TOWARDS_ENABLED: [&str; 3] = ["Creating", "Enabling", "Updating"];

pub async fn open(
    ctx: &Context,
    input: &Value,
    execution: &str,
    retries: u32,
) -> Result<Circuit, StepError> {
    // Every refusal here touches nothing: the workflow ends in IgnoreInvalidEvent.
    let invalid = StepError::InvalidEvent;
    let routed = route(input).map_err(|e| invalid(e.to_string()))?;
    let id = match routed.target {
        Target::BuiltIn if ctx.fleet.fleet_only => {
            return Err(invalid(
                "this breaker deployment has no built-in consumer: the input must name an \
                 attachment ({\"attachment\": <id>, \"event\": <the alarm event>})"
                    .into(),
            ))
        }
        Target::BuiltIn => return open_consumer(ctx, routed.event, execution, retries, None).await,
        Target::Attachment(id) => id,
    };
    let table = ctx.fleet.attachments.as_ref().ok_or_else(|| {
        invalid(format!(
            "the input names attachment {id:?}, but this breaker deployment has no attachments \
             table (ATTACHMENTS_TABLE)"
        ))
    })?;
    // A late or redelivered event of a detached consumer finds no item.
    let attachment = table.get(id).await?.ok_or_else(|| {
        invalid(format!(
            "attachment {id:?} is not registered with this breaker deployment (detached, or \
             never attached)"
        ))
    })?;
    let ctx = ctx.for_consumer(Some(&attachment)).await?;
    tracing::info!(attachment = %id, function = %ctx.config.consumer_function, "attached consumer");
    open_consumer(&ctx, routed.event, execution, retries, Some(attachment)).await
}

/// Opens the circuit of `ctx`'s consumer (the attachment's, when `attachment`).
async fn open_consumer(
    ctx: &Context,
    event: &Value,
    execution: &str,
    retries: u32,
    attachment: Option<CircuitAttachment>,
) -> Result<Circuit, StepError> {
    let queue_arn = ctx
        .config
        .queue()
        .map_err(|e| StepError::Config(e.to_string()))?;
    let own_alarm = OwnAlarm {
        name: &ctx.config.alarm_name,
        partition: &queue_arn.partition,
        region: &queue_arn.region,
        account: &queue_arn.account,
    };
    // An operator's `open` (the operator command starts the execution) or an alarm event.
    let invalid = |e: String| StepError::InvalidEvent(e);
    let (transition, by_hand) = match OperatorOpen::from_input(event) {
        Some(request) => (None, Some(request.map_err(|e| invalid(e.to_string()))?)),
        None => (
            Some(alarm_transition(event, &own_alarm).map_err(|e| invalid(e.to_string()))?),
            None,
        ),
    };
    // The controller can be invoked by anyone allowed to: only a running execution of the
    // breaker's own state machine opens a circuit.
    if !ctx.config.is_own_execution(execution)
        || !execution::is_running(&ctx.clients.sfn, execution).await?
    {
        return Err(StepError::InvalidEvent(format!(
            "{execution} is not a running execution of the state machine {}",
            ctx.config.state_machine_name
        )));
    }
    let lambda = &ctx.clients.lambda;
    let found = mapping::find(lambda, &ctx.config.queue_arn, &ctx.config.consumer_function).await?;
    // A mapping on its way to Enabled (a deploy of the consumer during the outage, say) is
    // not an operator's choice: wait for it (the state machine retries MappingNotSettled)
    // rather than leave the consumer unprotected while the alarm stays in ALARM.
    if SETTLING_TOWARDS_ENABLED.contains(&found.state.as_str()) {
        return Err(StepError::MappingNotSettled {
            mapping: found.uuid.clone(),
            wanted: "Enabled".into(),
            actual: found.state.clone(),
            seconds: 0,
        });
    }
    let info = queue::describe(&ctx.clients.sqs, &queue_arn.name, &queue_arn.account).await?;
    let now = ctx.now_ms();

    let mut circuit = Circuit {
        status: OpenStatus::Opened,
        execution: execution.to_string(),
        // Only an Enabled mapping is the breaker's to disable, and then `Enabled` is the one
        // thing it gives back.
        mapping: found.snapshot(Changed {
            enabled: found.state == "Enabled",
            maximum_concurrency: None,
        }),
        queue_url: info.url,
        queue_arn: ctx.config.queue_arn.clone(),
        region: queue_arn.region.clone(),
        opened_at_ms: now,
        oldest_sent_ms: now,
        retention_seconds: info.retention_seconds,
        max_receive_count: info.max_receive_count,
        probe_visibility_seconds: 0,
        attempt: 0,
        last_probe: String::new(),
        wait_seconds: 0,
        backoff_ceiling_seconds: 0,
        next: None,
        reason: match (&transition, &by_hand) {
            (Some(t), _) => format!("alarm {}: {}", t.alarm_name, t.reason),
            (None, Some(request)) => format!("opened by hand: {}", request.reason),
            (None, None) => unreachable!("an open step has an alarm or an operator's request"),
        },
        rejitter: None,
        retrip: false,
        history_events: EXECUTION_STARTED + task(retries) + FLOW_STATE,
        slow_start: None,
        attachment,
    };

    let store = ctx.store();
    let record = store.get(&found.uuid).await?.unwrap_or_default();
    let mine = record.owner == execution && record.state == OPEN;
    // An operator's request is a decision, never stale, and not counted against the hourly
    // bound: those guard against the alarm.
    if let (false, false, Some(transition)) = (mine, record.state == OPEN, &transition) {
        if let Some(stale) = staleness(ctx, transition, &record, now).await? {
            circuit.status = OpenStatus::Stale;
            circuit.reason = stale;
            tracing::info!(mapping = %found.uuid, reason = %circuit.reason, "stale alarm ignored");
            return Ok(circuit);
        }
        if let Some((reason, wait)) = past_outage(ctx, transition, &record, now).await? {
            circuit.status = OpenStatus::PastOutage;
            circuit.wait_seconds = wait;
            circuit.reason = reason;
            tracing::info!(mapping = %found.uuid, reason = %circuit.reason, "the outage's old errors raised the alarm; standing aside");
            return Ok(circuit);
        }
        if let Some(wait) =
            cooldown_seconds(&record.recent_opens, now, ctx.config.max_circuits_per_hour)
        {
            return cool_down(ctx, circuit, &record, wait).await;
        }
    }

    circuit.retrip =
        transition.is_some() && record.state == CLOSED && is_retrip(record.since_ms, now);
    let opens_before = recent_opens(&record.recent_opens, now);
    let mut opens = opens_before.clone();
    opens.push(now);
    let snapshot = match store
        .acquire(
            &found.uuid,
            execution,
            now,
            &circuit.mapping,
            circuit.attachment.as_ref(),
            &circuit.reason,
            &opens,
        )
        .await?
    {
        Acquire::Acquired(snapshot) => snapshot,
        Acquire::HeldBy(held) => match take_over_if_ended(ctx, execution, &held).await? {
            Some(snapshot) => snapshot,
            None => {
                tracing::info!(mapping = %found.uuid, owner = %held.owner, state = %held.state, "circuit already held; nothing to do");
                circuit.status = OpenStatus::AlreadyOpen;
                circuit.reason = format!("{} holds this circuit ({})", held.owner, held.state);
                return Ok(circuit);
            }
        },
    };
    // Only a mapping that was Enabled when the circuit was taken is the breaker's to open;
    // anything else (Disabled by an operator) is left exactly as it is.
    if snapshot.state != "Enabled" {
        let reason = format!(
            "the mapping was {}, not Enabled; it is left alone",
            snapshot.state
        );
        store
            .release(&found.uuid, execution, now, &reason, &opens_before)
            .await?;
        tracing::info!(mapping = %found.uuid, state = %snapshot.state, "mapping not enabled; left alone");
        circuit.status = OpenStatus::MappingNotEnabled;
        circuit.reason = reason;
        return Ok(circuit);
    }
    circuit.mapping = snapshot;

    mapping::switch(
        lambda,
        &circuit.mapping.uuid,
        false,
        ctx.settle_timeout(),
        ctx.poll,
    )
    .await?;
    // Step Functions lets a step an operator's StopExecution interrupts run to its end, and
    // the recovery that the stop triggers runs meanwhile: it may look for the circuit before
    // the acquire above, or give the consumer back before the disable. Looking again now
    // that the mapping is Disabled settles it: a stop after this look is recovered by the
    // rule, one before it here.
    if let Some(status) = execution::ended(&ctx.clients.sfn, execution).await? {
        return ended_while_opening(ctx, &circuit.mapping, execution, &status).await;
    }

    let consumer_timeout =
        crate::adapters::consumer::timeout_seconds(lambda, &circuit.mapping.function_arn).await?;
    circuit.probe_visibility_seconds = consumer_timeout + PROBE_VISIBILITY_MARGIN_SECONDS;
    let age = queue::oldest_message_age_seconds(
        &ctx.clients.cloudwatch,
        &queue_arn.name,
        UNIX_EPOCH + Duration::from_millis(now),
    )
    .await?;
    circuit.oldest_sent_ms = oldest_sent_ms(now, age, []);
    circuit.wait_seconds = ctx.config.backoff.delay(0, (ctx.random)());
    circuit.backoff_ceiling_seconds = ctx.config.backoff.ceiling(0);
    if by_hand.as_ref().is_some_and(|r| r.hold) {
        // Held open by hand: no probes until an operator closes the circuit.
        circuit.status = OpenStatus::Held;
        circuit.wait_seconds = HOLD_SECONDS;
    }

    ctx.signals()
        .emit(
            Transition::CircuitOpened,
            &ctx.detail(&circuit, &circuit.reason),
        )
        .await;
    tracing::info!(mapping = %circuit.mapping.uuid, wait_seconds = circuit.wait_seconds, "circuit opened");
    Ok(circuit)
}

/// The execution ended while this step opened its circuit: recover it as the recovery rule
/// does, and, if that rule already closed the circuit (before the disable), give the consumer
/// back again, unless a new circuit holds the mapping by now. Refused as an invalid event: the
/// workflow has ended anyway.
async fn ended_while_opening(
    ctx: &Context,
    snapshot: &MappingSnapshot,
    execution: &str,
    status: &str,
) -> Result<Circuit, StepError> {
    tracing::warn!(mapping = %snapshot.uuid, status, "the execution ended while it opened the circuit; recovering");
    let recovery = super::recover::recover_circuits(ctx, execution, status).await?;
    if recovery.is_none_or(|r| r.recovered.is_empty()) {
        let record = ctx.store().get(&snapshot.uuid).await?.unwrap_or_default();
        if record.state == OPEN || record.state == GAVE_UP {
            tracing::info!(mapping = %snapshot.uuid, owner = %record.owner, state = %record.state, "the circuit is held; left to its holder");
        } else {
            super::end::give_back(ctx, snapshot).await?;
            super::end::rearm_alarm(
                ctx,
                &format!("execution ended {status} while it opened the circuit; recovered"),
            )
            .await?;
            tracing::warn!(mapping = %snapshot.uuid, status, "gave back a consumer disabled after its circuit was recovered");
        }
    }
    Err(StepError::InvalidEvent(format!(
        "{execution} ended ({status}) while it opened the circuit of mapping {}; the consumer \
         was given back",
        snapshot.uuid
    )))
}

/// Why this ALARM is for an outage that is over, if it is: it came before the circuit's last
/// end, or it is old (a redelivery, a delayed start) and the alarm has left that ALARM state.
async fn staleness(
    ctx: &Context,
    transition: &AlarmTransition,
    record: &CircuitRecord,
    now: u64,
) -> Result<Option<String>, StepError> {
    let at = transition.time_ms;
    if at < record.since_ms {
        return Ok(Some(format!(
            "the alarm entered ALARM at {at} ms, before the circuit last ended at {} ms",
            record.since_ms
        )));
    }
    if is_fresh(at, now) {
        return Ok(None);
    }
    Ok(
        match alarm::current(&ctx.clients.cloudwatch, &ctx.config.alarm_name).await? {
            // The same ALARM still holds (CloudWatch's timestamps carry milliseconds, events may
            // not): the outage goes on.
            Some((state, since)) if state == "ALARM" && since <= at + 999 => None,
            Some((state, since)) => Some(format!(
                "the alarm entered ALARM at {at} ms and is {state} since {since} ms: the outage \
             this event announced is over"
            )),
            None => Some(format!(
                "the alarm {} no longer exists",
                ctx.config.alarm_name
            )),
        },
    )
}

/// The longest an alarm's window can reach back (CloudWatch caps period × evaluation periods
/// at a day), with margin: past it, no ALARM can rest on datapoints from before the close.
const LONGEST_WINDOW_MS: u64 = 2 * 86_400_000;

/// Why this ALARM, raised soon after the circuit closed, is the outage's echo (every
/// breaching datapoint CloudWatch evaluated predates the close), and how long to stand aside
/// before re-arming; `None` for a new outage, an ALARM set by hand (no evaluated datapoints),
/// or an alarm the breaker cannot re-evaluate (an anomaly band). A composite's ALARM is an
/// echo when every child that triggered it is one.
async fn past_outage(
    ctx: &Context,
    transition: &AlarmTransition,
    record: &CircuitRecord,
    now: u64,
) -> Result<Option<(String, u32)>, StepError> {
    let closed = record.since_ms;
    if record.state != CLOSED || closed == 0 || now >= closed + LONGEST_WINDOW_MS {
        return Ok(None);
    }
    let Some(reason_data) = transition.reason_data.as_deref() else {
        return Ok(None);
    };
    let cloudwatch = &ctx.clients.cloudwatch;
    let until = match triggering_alarms(reason_data) {
        Some(children) if !children.is_empty() => {
            let mut latest = 0;
            for (child, _) in children {
                // A child out of the role's reach (a user's composite) is not judged: the
                // ALARM is taken as a new outage.
                let Ok(Some((rule, evaluated, since))) = alarm::evidence(cloudwatch, &child).await
                else {
                    return Ok(None);
                };
                match only_old_errors(&rule, closed, since, &evaluated) {
                    Some(until) => latest = latest.max(until),
                    None => return Ok(None),
                }
            }
            latest
        }
        Some(_) => return Ok(None),
        None => {
            let Some(evaluated) = evaluated_datapoints(reason_data) else {
                return Ok(None);
            };
            let Some(rule) = alarm::rule(cloudwatch, &ctx.config.alarm_name).await? else {
                return Ok(None);
            };
            match only_old_errors(&rule, closed, transition.time_ms, &evaluated) {
                Some(until) => until,
                None => return Ok(None),
            }
        }
    };
    let wait = (until.saturating_sub(now).div_ceil(1000)).max(1) as u32;
    Ok(Some((
        format!(
            "every breaching datapoint of the alarm predates the circuit's close at {closed} ms: \
             the outage's old errors, not a new outage; re-arming in {wait}s"
        ),
        wait,
    )))
}

/// An OPEN circuit whose owner has ended (an execution stopped, failed or timed out, or a
/// recovery past its lease) without releasing it is taken over rather than left stranded;
/// returns the snapshot its first owner recorded.
async fn take_over_if_ended(
    ctx: &Context,
    execution: &str,
    held: &CircuitRecord,
) -> Result<Option<MappingSnapshot>, StepError> {
    if held.state != OPEN || held.owner.is_empty() || held.owner == execution {
        return Ok(None);
    }
    if owner_alive(ctx, held).await? {
        return Ok(None);
    }
    let reason = format!("took the circuit over from {}, which ended", held.owner);
    let store = ctx.store();
    if !store
        .take_over(&held.mapping_id, execution, &held.owner, &reason, 0)
        .await?
    {
        return Ok(None);
    }
    tracing::warn!(mapping = %held.mapping_id, previous_owner = %held.owner, "took over a circuit whose owner ended");
    Ok(held.snapshot.clone())
}

/// Is the circuit's owner still at work? An execution while it runs; a recovery while its
/// lease lasts.
pub(super) async fn owner_alive(ctx: &Context, held: &CircuitRecord) -> Result<bool, StepError> {
    if held.owner.starts_with("arn:") {
        execution::is_running(&ctx.clients.sfn, &held.owner).await
    } else {
        Ok(ctx.now_ms() < held.lease_until_ms)
    }
}

/// Too many circuits on this mapping in the last hour: stand aside, alert, and let the
/// workflow re-arm the alarm once the oldest of them leaves the hour.
async fn cool_down(
    ctx: &Context,
    mut circuit: Circuit,
    record: &CircuitRecord,
    wait: u32,
) -> Result<Circuit, StepError> {
    circuit.status = OpenStatus::CoolingDown;
    circuit.wait_seconds = wait;
    circuit.reason = format!(
        "{} circuits opened on this mapping in the last hour (MaxCircuitsPerHour); the breaker \
         stands aside and re-arms in {wait}s",
        recent_opens(&record.recent_opens, ctx.now_ms()).len()
    );
    ctx.signals()
        .emit(
            Transition::CircuitGaveUp,
            &ctx.detail(&circuit, &circuit.reason),
        )
        .await;
    tracing::warn!(reason = %circuit.reason, "cooling down");
    Ok(circuit)
}
