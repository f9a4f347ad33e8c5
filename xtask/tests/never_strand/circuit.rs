//! Opening and closing the circuit as the scenarios need it, and small helpers.

use super::*;

// ---------------------------------------------------------------------------------------
// Opening and closing
// ---------------------------------------------------------------------------------------

/// Starts the outage, sends `count` messages, and opens the circuit ([`open_circuit`]).
/// Returns the messages and the owner execution.
pub(super) async fn outage_and_open(
    d: &Deployment,
    prefix: &str,
    count: usize,
) -> Result<(Vec<Sent>, String)> {
    d.outage(true).await?;
    let sent = traffic::send(&d.sqs, d.queue(), prefix, count).await?;
    let opened = open_circuit(d, Starts::One).await?;
    Ok((sent, opened.owner))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Starts {
    One,
    /// Two executions with the same event, started concurrently.
    TwoAtOnce,
}

/// An open circuit, as [`open_circuit`] left it.
#[derive(Debug)]
pub(super) struct Opened {
    /// The execution that owns the circuit (the circuit item's `owner`).
    pub(super) owner: String,
    /// The executions the test started, all with the alarm event of `time`.
    pub(super) ours: Vec<String>,
    /// The alarm event's time.
    pub(super) time: String,
    /// Every other execution that started meanwhile (the test's, the alarm bridge's) and
    /// ended in AnotherExecutionOwnsCircuit.
    pub(super) stood_aside: Vec<String>,
}

/// Opens the circuit as AWS would: the alarm goes to ALARM (SetAlarmState) and the alarm
/// event starts an execution (`starts`; the alarm bridge starts one more, see the module's
/// documentation). Waits until one execution owns the circuit, is probing (WaitBeforeProbe)
/// and has the consumer's mapping Disabled, and until every other new execution has stood
/// aside. A circuit left OPEN by an owner that no longer runs may be taken over.
pub(super) async fn open_circuit(d: &Deployment, starts: Starts) -> Result<Opened> {
    let before = d.circuit().await?;
    if let Some(c) = &before {
        if c.state == "OPEN" {
            let running = match &c.owner {
                Some(owner) => breaker::status(&d.sfn, owner).await? == ExecutionStatus::Running,
                None => false,
            };
            ensure!(
                !running,
                "the circuit is already open, owned by a running execution: {c:?}"
            );
        }
    }
    // The breaker ignores an ALARM event older than the circuit's last close, and the event's
    // time counts whole seconds: start in a later second than the last change.
    let last_change = before.as_ref().and_then(|c| c.since_ms).unwrap_or(0);
    eventually(
        "a second later than the circuit's last change",
        Duration::from_secs(10),
        || async {
            let now_s = epoch_ms(SystemTime::now()).div_euclid(1000);
            Ok((now_s * 1000 > last_change).then_some(()))
        },
    )
    .await?;

    let known = execution_arns(d).await?;
    d.set_alarm(
        "ALARM",
        "xtask: the consumer's errors crossed the threshold",
    )
    .await?;
    let time = breaker::utc_time(SystemTime::now());
    let ours: Vec<String> = match starts {
        Starts::One => vec![d.start_alarm_execution_at(&time).await?],
        Starts::TwoAtOnce => {
            let (a, b) = tokio::join!(
                d.start_alarm_execution_at(&time),
                d.start_alarm_execution_at(&time)
            );
            vec![a?, b?]
        }
    };

    let owner = eventually(
        "a running execution to own the OPEN circuit",
        Duration::from_secs(90),
        || async {
            let Some(c) = d.circuit().await? else {
                return Ok(None);
            };
            // Only a new execution counts: a stopped owner of a circuit left OPEN is known.
            let Some(owner) = c.owner.filter(|o| c.state == "OPEN" && !known.contains(o)) else {
                return Ok(None);
            };
            let status = breaker::status(&d.sfn, &owner).await?;
            ensure!(
                status == ExecutionStatus::Running,
                "the owner {owner} ended {status:?} right after opening"
            );
            Ok(Some(owner))
        },
    )
    .await?;
    eventually(
        "the owner probing (WaitBeforeProbe) with the consumer's mapping Disabled",
        Duration::from_secs(90),
        || async {
            let states = breaker::visited_states(&d.sfn, &owner).await?;
            let mapping = d.consumer_mapping().await?.state;
            Ok(
                (states.iter().any(|s| s == "WaitBeforeProbe") && mapping == "Disabled")
                    .then_some(()),
            )
        },
    )
    .await?;

    // Every other new execution stands aside. The alarm bridge's one normally shows up within
    // a second of SetAlarmState; it is waited for a while, but not required.
    let others_done = |at_least: usize| {
        let known = &known;
        let owner = &owner;
        async move {
            let others: Vec<breaker::Execution> =
                breaker::executions(&d.sfn, &d.breaker["StateMachineArn"])
                    .await?
                    .into_iter()
                    .filter(|e| !known.contains(&e.arn) && &e.arn != owner)
                    .collect();
            let done = others.len() >= at_least
                && others.iter().all(|e| e.status != ExecutionStatus::Running);
            Ok(done.then_some(others))
        }
    };
    let expected = ours.len(); // ours, less the owner if it is ours, plus the bridge's
    let others = match within(Duration::from_secs(20), || others_done(expected)).await? {
        Some(others) => others,
        None => {
            eventually(
                "the other new executions to end",
                Duration::from_secs(60),
                || others_done(0),
            )
            .await?
        }
    };
    let mut stood_aside = Vec::new();
    for e in others {
        let states = breaker::visited_states(&d.sfn, &e.arn).await?;
        ensure!(
            e.status == ExecutionStatus::Succeeded
                && states.last().map(String::as_str) == Some("AnotherExecutionOwnsCircuit")
                && !states.iter().any(|s| s == "WaitBeforeProbe"),
            "execution {} should have stood aside (owner {owner}): {:?} {states:?}",
            e.arn,
            e.status
        );
        stood_aside.push(e.arn);
    }
    Ok(Opened {
        owner,
        ours,
        time,
        stood_aside,
    })
}

/// Waits for the owner (the consumer healthy again) to close the circuit: CircuitClosed,
/// mapping Enabled, circuit CLOSED.
pub(super) async fn closes(d: &Deployment, owner: &str) -> Result<()> {
    let end = breaker::finished(&d.sfn, owner, TO_CLOSE).await?;
    let states = breaker::visited_states(&d.sfn, owner).await?;
    ensure!(end == ExecutionStatus::Succeeded, "{end:?}: {states:?}");
    ensure!(
        states.last().map(String::as_str) == Some("CircuitClosed"),
        "{states:?}"
    );
    let mapping = d.consumer_mapping().await?;
    ensure!(mapping.state == "Enabled", "after the close: {mapping:?}");
    ensure!(circuit_state(d).await? == "CLOSED");
    Ok(())
}

/// Stops `execution` as an operator would and waits until it is ABORTED.
pub(super) async fn stop_and_wait(d: &Deployment, execution: &str) -> Result<()> {
    breaker::stop(&d.sfn, execution, "xtask: an operator stopped it").await?;
    let end = breaker::finished(&d.sfn, execution, Duration::from_secs(60)).await?;
    ensure!(end == ExecutionStatus::Aborted, "stopped, it ended {end:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// The circuit item's state, `NONE` without an item.
pub(super) async fn circuit_state(d: &Deployment) -> Result<String> {
    Ok(d.circuit()
        .await?
        .map(|c| c.state)
        .unwrap_or_else(|| "NONE".into()))
}

pub(super) async fn execution_arns(d: &Deployment) -> Result<HashSet<String>> {
    Ok(breaker::executions(&d.sfn, &d.breaker["StateMachineArn"])
        .await?
        .into_iter()
        .map(|e| e.arn)
        .collect())
}

/// UpdateEventSourceMapping of the configuration only, as a deploy would (never `Enabled`).
pub(super) async fn update_mapping(
    d: &Deployment,
    uuid: &str,
    batch_size: Option<i32>,
    response_types: Option<Vec<FunctionResponseType>>,
) -> Result<()> {
    d.lambda
        .update_event_source_mapping()
        .uuid(uuid)
        .set_batch_size(batch_size)
        .set_function_response_types(response_types)
        .send()
        .await
        .context("UpdateEventSourceMapping")?;
    Ok(())
}

/// Puts the consumer's mapping configuration back to the example stack's.
pub(super) async fn restore_mapping_configuration(d: &Deployment) -> Result<()> {
    update_mapping(
        d,
        d.mapping(),
        Some(BATCH_SIZE),
        Some(vec![FunctionResponseType::ReportBatchItemFailures]),
    )
    .await?;
    original_configuration(&d.consumer_mapping().await?)
}

pub(super) async fn delete_mapping(d: &Deployment, uuid: &str) -> Result<()> {
    d.lambda
        .delete_event_source_mapping()
        .uuid(uuid)
        .send()
        .await
        .context("DeleteEventSourceMapping")?;
    eventually(
        "the mapping to be deleted",
        Duration::from_secs(60),
        || async {
            let left = breaker::queue_mappings(&d.lambda, &d.example["QueueArn"]).await?;
            Ok((!left.iter().any(|m| m.uuid == uuid)).then_some(()))
        },
    )
    .await
}

/// The EventBridge rules of the default bus that match "Step Functions Execution Status
/// Change" events (the breaker's recovery).
pub(super) async fn recovery_rules(d: &Deployment) -> Result<Vec<String>> {
    let mut rules = Vec::new();
    let mut token = None;
    loop {
        let page = d
            .events
            .list_rules()
            .event_bus_name("default")
            .set_next_token(token)
            .send()
            .await
            .context("ListRules")?;
        rules.extend(
            page.rules()
                .iter()
                .filter(|r| {
                    r.event_pattern()
                        .is_some_and(|p| p.contains("Step Functions Execution Status Change"))
                })
                .filter_map(|r| r.name().map(str::to_string)),
        );
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    ensure!(
        !rules.is_empty(),
        "no rule on \"Step Functions Execution Status Change\" (the recovery) is deployed"
    );
    Ok(rules)
}

pub(super) async fn set_rules(d: &Deployment, rules: &[String], enabled: bool) -> Result<()> {
    for rule in rules {
        if enabled {
            d.events
                .enable_rule()
                .name(rule)
                .send()
                .await
                .context("EnableRule")?;
        } else {
            d.events
                .disable_rule()
                .name(rule)
                .send()
                .await
                .context("DisableRule")?;
        }
    }
    Ok(())
}

/// Like [`eventually`], but a timeout is an answer (None), not an error.
pub(super) async fn within<T, F, Fut>(timeout: Duration, mut check: F) -> Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(Some(value));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
