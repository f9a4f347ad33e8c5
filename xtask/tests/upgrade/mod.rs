//! Upgrading a single-consumer stack to the fleet release with its circuit open, on a local
//! emulator. The previous release (the commit before any fleet change, [`PREVIOUS_RELEASE`]):
//! its `infra/template.yaml` and its Lambdas, built from that commit's tree, are deployed
//! next to the example stack; the consumer fails and the circuit opens. While it is open, the
//! current template and Lambdas are deployed over the same stack (`sam deploy`, as an
//! operator upgrades). The execution that owns the circuit keeps probing, now through the
//! new controller, reading the circuit the old one wrote; once the consumer heals it closes:
//! the mapping `Enabled`, no second circuit opened, every message processed, none in the DLQ.
//! Then a second consumer is attached to the upgraded stack (`infra/attachment.yaml`) and
//! registers.
//!
//! The previous release is built from its own tree on this checkout's dependencies
//! ([`previous_release`]). A clone without that commit (a shallow one) fails the test with
//! what to fetch.

use anyhow::{ensure, Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sfn::types::ExecutionStatus;
use std::time::{Duration, Instant};
use xtask::stack::{self, Deployment, Parameters, TestStack, BREAKER_STACK};
use xtask::wait::eventually;
use xtask::{breaker, paths, sam, shapes, traffic};

/// The last commit before any fleet change: the single-consumer release a stack is upgraded
/// from.
const PREVIOUS_RELEASE: &str = "7d91eba4435cae9728245c2bead64ab2f561f131";

mod previous_release;

/// The attachment registered on the upgraded stack.
const ATTACHMENT: &str = "upgrade-second";

fn mark(what: &str) {
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t0 = T0.get_or_init(Instant::now);
    println!("[{:6.1}s] {what}", t0.elapsed().as_secs_f64());
}

/// The breaker's parameters, the same for both releases: fast probes, the `errors` signal
/// with a threshold the staged outage never reaches (the test raises the alarm itself, as
/// CloudWatch would).
fn parameters() -> Parameters {
    let mut p = stack::fast_breaker();
    p.extend([
        ("AlarmSignal", "errors".into()),
        ("AlarmThreshold", "1000000".into()),
    ]);
    p
}

#[test]
#[ignore = "needs the local toolchain and emulator; run with `cargo xtask test`"]
fn a_single_consumer_stack_upgrades_with_its_circuit_open_and_takes_an_attachment() -> Result<()> {
    mark("starting the emulator");
    let local = TestStack::start()?;
    stack::deploy_example(&local.tools, &local.emulator, &stack::fast_example())?;
    mark("the previous release");
    previous_release::deploy(&local, &parameters())?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut d = runtime.block_on(Deployment::connect(local))?;
    ensure!(
        !d.breaker.contains_key("AttachmentsTableName"),
        "the previous release has no attachments table: {:?}",
        d.breaker
    );
    runtime.block_on(async {
        // The outage, on the previous release.
        mark("the outage opens the circuit");
        let before = shapes::all_executions(&d).await?;
        d.outage(true).await?;
        let sent = traffic::send(&d.sqs, d.queue(), "upgrade", 20).await?;
        d.set_alarm(
            "ALARM",
            "xtask: the consumer's errors crossed the threshold",
        )
        .await?;
        d.start_alarm_execution().await?;
        let owner =
            shapes::opened(&d, "the circuit to open", Duration::from_secs(90), &before).await?;
        eventually("the mapping Disabled", Duration::from_secs(60), || async {
            Ok((d.mapping_state().await? == "Disabled").then_some(()))
        })
        .await?;
        let opened = d.circuit().await?.context("no circuit item")?;
        ensure!(
            opened.state == "OPEN" && opened.owner.as_deref() == Some(owner.as_str()),
            "{opened:?}"
        );

        // The upgrade, while the circuit is open and the consumer still failing.
        mark("upgrading to the current release");
        let upgrading = Instant::now();
        stack::deploy_breaker(&d.local.tools, &d.local.emulator, &parameters()).await?;
        mark(&format!(
            "upgraded in {:.0}s",
            upgrading.elapsed().as_secs_f64()
        ));
        let config = xtask::aws::config(&d.local.emulator).await;
        d.breaker = xtask::aws::stack_outputs(&config, BREAKER_STACK).await?;
        let table = d
            .breaker
            .get("AttachmentsTableName")
            .context("the upgraded stack's AttachmentsTableName output")?
            .clone();
        let controller = d
            .lambda
            .get_function_configuration()
            .function_name(&d.breaker["ControllerFunctionName"])
            .send()
            .await?;
        ensure!(
            controller
                .environment()
                .and_then(|e| e.variables())
                .and_then(|v| v.get("ATTACHMENTS_TABLE"))
                == Some(&table),
            "the controller runs the current release: {controller:?}"
        );
        ensure!(
            breaker::status(&d.sfn, &owner).await? == ExecutionStatus::Running,
            "the owner runs on through the upgrade"
        );
        let circuit = d.circuit().await?.context("the circuit item is gone")?;
        ensure!(
            circuit.state == "OPEN" && circuit.owner.as_deref() == Some(owner.as_str()),
            "the circuit survives the upgrade, owned by the same execution: {circuit:?}"
        );
        ensure!(d.mapping_state().await? == "Disabled");

        // The owner probes through the new controller, which reads the old one's circuit:
        // one more failed probe after the upgrade.
        let failed_probes =
            |states: &[String]| states.iter().filter(|s| *s == "NextBackoff").count();
        let probed = failed_probes(&breaker::visited_states(&d.sfn, &owner).await?);
        eventually(
            "a failed probe by the current release",
            Duration::from_secs(60),
            || async {
                let states = breaker::visited_states(&d.sfn, &owner).await?;
                Ok((failed_probes(&states) > probed).then_some(()))
            },
        )
        .await?;

        // Heal: the same execution closes the circuit.
        mark("healing");
        d.outage(false).await?;
        let end = breaker::finished(&d.sfn, &owner, Duration::from_secs(120)).await?;
        let states = breaker::visited_states(&d.sfn, &owner).await?;
        ensure!(end == ExecutionStatus::Succeeded, "{end:?}: {states:?}");
        ensure!(
            states.last().map(String::as_str) == Some("CircuitClosed"),
            "{states:?}"
        );
        // Enabled, and nothing else about the mapping changed (infra/example.yaml's).
        let mapping = d.consumer_mapping().await?;
        ensure!(
            mapping.state == "Enabled"
                && mapping.batch_size == Some(10)
                && mapping.function_response_types == ["ReportBatchItemFailures"],
            "{mapping:?}"
        );
        let closed = d.circuit().await?.context("the circuit item is gone")?;
        ensure!(closed.state == "CLOSED", "{closed:?}");
        let circuits = shapes::entered(&d, "WaitBeforeProbe", &before).await?;
        ensure!(
            circuits == [owner.clone()],
            "one circuit, the one opened before the upgrade: {circuits:?}"
        );
        d.every_message_processed(&sent).await?;
        mark("closed, every message processed, the DLQ empty");

        // A second consumer attaches to the upgraded stack: the same function on a queue of
        // its own (a function reading two queues), with the per-queue signal.
        let queue_url = d
            .sqs
            .create_queue()
            .queue_name("sqscb-upgrade-second")
            .send()
            .await?
            .queue_url()
            .context("CreateQueue returned no URL")?
            .to_string();
        let queue_arn = d
            .sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .context("the second queue's ARN")?
            .clone();
        d.lambda
            .create_event_source_mapping()
            .function_name(d.function())
            .event_source_arn(&queue_arn)
            .batch_size(10)
            .send()
            .await?;
        mark("attaching a second consumer");
        let attachment: Parameters = vec![
            ("Breaker", BREAKER_STACK.into()),
            ("ConsumerFunctionName", d.function().to_string()),
            ("QueueArn", queue_arn.clone()),
            ("AlarmSignal", "failed-records".into()),
        ];
        sam::deploy(
            &d.local.tools,
            &d.local.emulator,
            &paths::root().join("infra/attachment.yaml"),
            ATTACHMENT,
            &attachment,
        )?;
        let item = d
            .dynamodb
            .get_item()
            .table_name(&table)
            .key("id", AttributeValue::S(ATTACHMENT.into()))
            .consistent_read(true)
            .send()
            .await?;
        let settings: serde_json::Value = serde_json::from_str(
            item.item()
                .and_then(|i| i.get("settings"))
                .and_then(|s| s.as_s().ok())
                .context("the attachment's item in the upgraded stack's table")?,
        )?;
        ensure!(
            settings["QueueArn"] == queue_arn.as_str()
                && settings["AlarmSignal"] == "failed-records",
            "{settings}"
        );
        mark("registered");
        anyhow::Ok(())
    })
}
