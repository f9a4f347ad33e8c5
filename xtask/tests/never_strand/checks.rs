//! The checks every scenario ends with, and putting the stack back after a failed one.

use super::*;

// ---------------------------------------------------------------------------------------
// Invariants
// ---------------------------------------------------------------------------------------

/// What every scenario must leave behind: every message it sent processed (by fingerprint)
/// or in the DLQ and the queue drained; the consumer's mapping Enabled with its original
/// configuration; the rejitter off; the circuit not OPEN; the alarm not in ALARM unless a
/// running execution owns the circuit; no execution of the scenario failed or still running;
/// and a second outage afterwards opens the circuit again, which then closes (`then`).
pub(super) async fn invariants(
    d: &Deployment,
    name: &str,
    sent: &[Sent],
    known: &HashSet<String>,
    then: Then,
) -> Result<()> {
    eventually(
        "the consumer's mapping Enabled and the circuit not OPEN",
        RECOVERY,
        || async {
            let mapping = d.consumer_mapping().await?.state;
            let circuit = circuit_state(d).await?;
            Ok((mapping == "Enabled" && circuit != "OPEN").then_some(()))
        },
    )
    .await?;
    original_configuration(&d.consumer_mapping().await?)?;
    let rejitter = d.rejitter_mapping().await?;
    ensure!(rejitter.state == "Disabled", "rejitter: {rejitter:?}");
    alarm_not_raised_without_an_owner(d).await?;
    all_processed(d, sent).await?;
    mark("  invariants: the scenario's messages processed");

    if then == Then::End {
        // A second outage afterwards opens the circuit again, and it closes again.
        let (again, owner) = outage_and_open(d, &format!("{name}-again"), 3).await?;
        d.outage(false).await?;
        closes(d, &owner).await?;
        mark("  invariants: opened and closed again");
        all_processed(d, &again).await?;
        ensure!(circuit_state(d).await? == "CLOSED");
        original_configuration(&d.consumer_mapping().await?)?;
        alarm_not_raised_without_an_owner(d).await?;
    }

    // Every execution started during the scenario ended, none failed.
    let ended = eventually(
        "every execution of the scenario to end",
        RECOVERY,
        || async {
            let new: Vec<breaker::Execution> =
                breaker::executions(&d.sfn, &d.breaker["StateMachineArn"])
                    .await?
                    .into_iter()
                    .filter(|e| !known.contains(&e.arn))
                    .collect();
            Ok((!new.iter().any(|e| e.status == ExecutionStatus::Running)).then_some(new))
        },
    )
    .await?;
    let bad: Vec<&breaker::Execution> = ended
        .iter()
        .filter(|e| {
            !matches!(
                e.status,
                ExecutionStatus::Succeeded | ExecutionStatus::Aborted
            )
        })
        .collect();
    ensure!(bad.is_empty(), "executions that did not succeed: {bad:?}");
    Ok(())
}

pub(super) fn original_configuration(mapping: &Mapping) -> Result<()> {
    ensure!(
        mapping.batch_size == Some(BATCH_SIZE)
            && mapping.function_response_types == [REPORT_BATCH_ITEM_FAILURES],
        "the consumer's mapping must keep BatchSize {BATCH_SIZE} and FunctionResponseTypes \
         [{REPORT_BATCH_ITEM_FAILURES}]: {mapping:?}"
    );
    Ok(())
}

/// The alarm is in ALARM only while a running execution owns an OPEN circuit.
pub(super) async fn alarm_not_raised_without_an_owner(d: &Deployment) -> Result<()> {
    eventually(
        "the alarm out of ALARM (no running execution owns the circuit)",
        Duration::from_secs(60),
        || async {
            if d.alarm().await?.value != "ALARM" {
                return Ok(Some(()));
            }
            let Some(circuit) = d.circuit().await? else {
                return Ok(None);
            };
            let owned = match (&circuit.state[..], &circuit.owner) {
                ("OPEN", Some(owner)) => {
                    breaker::status(&d.sfn, owner).await? == ExecutionStatus::Running
                }
                _ => false,
            };
            Ok(owned.then_some(()))
        },
    )
    .await
}

/// Waits until every message of `sent` was processed (by fingerprint) or is in the DLQ, and
/// the queue is empty (visible, in flight and delayed).
pub(super) async fn all_processed(d: &Deployment, sent: &[Sent]) -> Result<()> {
    let wanted: HashSet<&str> = sent.iter().map(|s| s.fingerprint.as_str()).collect();
    let last = std::cell::RefCell::new(String::new());
    let done = eventually("every message processed or dead-lettered", TO_DRAIN, || {
        let wanted = &wanted;
        let last = &last;
        async move {
            let processed: HashSet<String> = traffic::processed_fingerprints(&d.logs, d.function())
                .await?
                .into_iter()
                .collect();
            let depth = status::queue_depth(&d.sqs, d.queue()).await?;
            let mut missing: Vec<&str> = wanted
                .iter()
                .copied()
                .filter(|f| !processed.contains(*f))
                .collect();
            if !missing.is_empty() {
                let dlq = &d.example["DeadLetterQueueUrl"];
                if status::queue_depth(&d.sqs, dlq).await?.total() > 0 {
                    let dead = dead_letter_fingerprints(d).await?;
                    missing.retain(|f| !dead.contains(*f));
                }
            }
            *last.borrow_mut() = format!(
                "{} of {} missing, queue {depth:?}",
                missing.len(),
                wanted.len()
            );
            Ok((missing.is_empty() && depth.total() == 0).then_some(()))
        }
    })
    .await;
    done.with_context(|| format!("last seen: {}", last.borrow()))
}

/// The fingerprints of the messages in the DLQ. Each is received (hidden for 30 s while the
/// DLQ is read through) and made visible again at once.
pub(super) async fn dead_letter_fingerprints(d: &Deployment) -> Result<HashSet<String>> {
    let dlq = &d.example["DeadLetterQueueUrl"];
    let mut fingerprints = HashSet::new();
    let mut handles = Vec::new();
    for _ in 0..100 {
        let out = d
            .sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(10)
            .visibility_timeout(30)
            .message_attribute_names("All")
            .send()
            .await
            .context("ReceiveMessage from the DLQ")?;
        if out.messages().is_empty() {
            break;
        }
        for m in out.messages() {
            let attributes: BTreeMap<String, OutAttribute> = m
                .message_attributes()
                .into_iter()
                .flatten()
                .map(|(name, a)| {
                    let value = match a.binary_value() {
                        Some(b) => AttributeValue::Binary(b.as_ref().to_vec()),
                        None => AttributeValue::String(a.string_value().unwrap_or_default().into()),
                    };
                    let attribute = OutAttribute {
                        data_type: a.data_type().to_string(),
                        value,
                    };
                    (name.clone(), attribute)
                })
                .collect();
            let message = traffic::Message {
                body: m.body().unwrap_or_default().to_string(),
                attributes,
            };
            fingerprints.insert(message.fingerprint());
            handles.extend(m.receipt_handle().map(str::to_string));
        }
    }
    for handle in handles {
        d.sqs
            .change_message_visibility()
            .queue_url(dlq)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await
            .context("ChangeMessageVisibility in the DLQ")?;
    }
    Ok(fingerprints)
}

/// After a failed scenario: puts the stack back as well as it can for the next one, and
/// reports (never fails on) what it could not.
pub(super) async fn reset(d: &Deployment) {
    let report = |what: &str, outcome: Result<()>| {
        if let Err(e) = outcome {
            println!("  reset: {what}: {e:#}");
        }
    };
    report("healing the consumer", d.outage(false).await);
    let consumer = [("LATENCY_MS", "0".to_string())];
    report(
        "putting the consumer's latency and timeout back",
        xtask::consumer::configure(&d.lambda, d.function(), &consumer, Some(3)).await,
    );
    if let Ok(rules) = recovery_rules(d).await {
        report(
            "enabling the recovery rule",
            set_rules(d, &rules, true).await,
        );
    }
    let stopping = async {
        for e in breaker::executions(&d.sfn, &d.breaker["StateMachineArn"]).await? {
            if e.status == ExecutionStatus::Running {
                breaker::stop(&d.sfn, &e.arn, "xtask: reset after a failed scenario").await?;
            }
        }
        Ok(())
    };
    report("stopping running executions", stopping.await);
    let recovered = eventually("the circuit not OPEN", RECOVERY, || async {
        Ok((circuit_state(d).await? != "OPEN").then_some(()))
    })
    .await;
    if recovered.is_err() {
        // Last resort: no circuit at all, so the next scenario can open one.
        let deleting = async {
            use aws_sdk_dynamodb::types::AttributeValue as Ddb;
            d.dynamodb
                .delete_item()
                .table_name(&d.breaker["CircuitTableName"])
                .key("mapping_id", Ddb::S(d.mapping().to_string()))
                .send()
                .await
                .context("DeleteItem")?;
            Ok(())
        };
        report("the circuit stayed OPEN; deleting its item", deleting.await);
    }
    let mappings = async {
        for m in breaker::queue_mappings(&d.lambda, &d.example["QueueArn"]).await? {
            if m.function_name() == d.function() && m.uuid != d.mapping() {
                delete_mapping(d, &m.uuid).await?;
            }
        }
        d.lambda
            .update_event_source_mapping()
            .uuid(d.mapping())
            .enabled(true)
            .batch_size(BATCH_SIZE)
            .function_response_types(FunctionResponseType::ReportBatchItemFailures)
            .send()
            .await
            .context("UpdateEventSourceMapping")?;
        let rejitter = d.rejitter_mapping().await?;
        if rejitter.state != "Disabled" {
            d.lambda
                .update_event_source_mapping()
                .uuid(&rejitter.uuid)
                .enabled(false)
                .send()
                .await
                .context("UpdateEventSourceMapping (rejitter)")?;
        }
        Ok(())
    };
    report("restoring the mappings", mappings.await);
    report(
        "resetting the alarm",
        d.set_alarm("OK", "xtask: reset after a failed scenario")
            .await,
    );
    let drained = eventually("the queue to drain", TO_DRAIN, || async {
        Ok((status::queue_depth(&d.sqs, d.queue()).await?.total() == 0).then_some(()))
    })
    .await;
    report("draining the queue", drained);
}
