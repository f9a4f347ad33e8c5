//! The local stack as a unit: toolchain, emulator, and the deployed example stack.

use crate::{emulator::Emulator, sam, tools};
use anyhow::{Context, Result};
use std::collections::HashMap;

pub const EXAMPLE_STACK: &str = "sqscb-example";
pub const BREAKER_STACK: &str = "sqscb-breaker";

/// Parameters for the example stack; empty means the template's defaults.
pub type Parameters = Vec<(&'static str, String)>;

/// The example stack with the local-stack tests' timings: a failed batch is back in 5 s, the
/// consumer times out in 3 s, and messages have room for many receives (an outage's retries
/// and probes never move one to the DLQ).
pub fn fast_example() -> Parameters {
    vec![
        ("VisibilityTimeoutSeconds", "5".into()),
        ("ConsumerTimeoutSeconds", "3".into()),
        ("MaxReceiveCount", "1000".into()),
    ]
}

/// The breaker with the local-stack tests' timings: probes 1 to 2 s apart, mappings settled
/// within 20 s.
pub fn fast_breaker() -> Parameters {
    vec![
        ("BackoffBaseSeconds", "1".into()),
        ("BackoffCapSeconds", "2".into()),
        ("SettleTimeoutSeconds", "20".into()),
    ]
}

/// Reuses the emulator on `port` if one from this checkout is running, else starts one.
pub fn emulator_on(port: u16) -> Result<(tools::Tools, Emulator)> {
    // On a first run, the Lambdas' build and the pinned tools' install overlap.
    sam::start_lambda_build();
    let tools = tools::ensure()?;
    let emulator = match Emulator::find(port) {
        Some(found) => {
            eprintln!(
                "==> reusing ministack on 127.0.0.1:{port} (pid {})",
                found.pid
            );
            found
        }
        None => {
            eprintln!("==> starting ministack on 127.0.0.1:{port}");
            // The example stack's build meanwhile (its deploy comes next and finds it built).
            // A failure shows again, in full, when that deploy builds it.
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    let built = sam::turn().and_then(|_turn| sam::build(&tools, "example"));
                    if let Err(e) = built {
                        eprintln!("(the example stack's early build failed: {e:#})");
                    }
                });
                Emulator::start(&tools, port)
            })?
        }
    };
    Ok((tools, emulator))
}

/// Builds and deploys the example stack (idempotent: an unchanged stack is left as is).
pub fn deploy_example(
    tools: &tools::Tools,
    emulator: &Emulator,
    parameters: &Parameters,
) -> Result<()> {
    // Held through the deploy: deploys of several tests at once starved the tests running
    // meanwhile (the alarm bridge, the probes) of the cores.
    let _turn = sam::turn()?;
    let built = sam::build(tools, "example")?;
    sam::deploy(tools, emulator, &built, EXAMPLE_STACK, parameters)
}

/// Builds and deploys the breaker (`infra/template.yaml`) attached to the example stack's
/// consumer and queue; `parameters` add to or override those two.
pub async fn deploy_breaker(
    tools: &tools::Tools,
    emulator: &Emulator,
    parameters: &Parameters,
) -> Result<()> {
    deploy_breaker_tagged(tools, emulator, parameters, &[]).await
}

/// [`deploy_breaker`] with stack tags (key, value).
pub async fn deploy_breaker_tagged(
    tools: &tools::Tools,
    emulator: &Emulator,
    parameters: &Parameters,
    tags: &[(&str, String)],
) -> Result<()> {
    let all = attached(emulator, parameters).await?;
    let _turn = sam::turn()?;
    let built = sam::build(tools, "template")?;
    sam::deploy_tagged(tools, emulator, &built, BREAKER_STACK, &all, tags)
}

/// Both stacks, as [`deploy_example`] then [`deploy_breaker`] would deploy them, in one turn:
/// the breaker's template builds while the example stack deploys.
pub async fn deploy_example_and_breaker(
    tools: &tools::Tools,
    emulator: &Emulator,
    example: &Parameters,
    breaker: &Parameters,
) -> Result<()> {
    let _turn = sam::turn()?;
    let example_built = sam::build(tools, "example")?;
    let breaker_built = std::thread::scope(|scope| {
        let building = scope.spawn(|| sam::build(tools, "template"));
        let deployed = sam::deploy(tools, emulator, &example_built, EXAMPLE_STACK, example);
        let built = building
            .join()
            .map_err(|_| anyhow::anyhow!("building the breaker's template panicked"))?;
        deployed.and(built)
    })?;
    let all = attached(emulator, breaker).await?;
    sam::deploy(tools, emulator, &breaker_built, BREAKER_STACK, &all)
}

/// The breaker's parameters: the example stack's consumer and queue, then `parameters`.
pub async fn attached(emulator: &Emulator, parameters: &Parameters) -> Result<Parameters> {
    let config = crate::aws::config(emulator).await;
    let example = crate::aws::stack_outputs(&config, EXAMPLE_STACK).await?;
    let output = |key: &str| {
        example
            .get(key)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("the example stack has no {key} output"))
    };
    let mut all: Parameters = vec![
        ("ConsumerFunctionName", output("ConsumerFunctionName")?),
        ("QueueArn", output("QueueArn")?),
    ];
    all.extend(parameters.iter().cloned());
    Ok(all)
}

/// An emulator owned by a test: started on a free port, stopped (with everything it
/// spawned) when dropped, even when the test fails.
pub struct TestStack {
    pub tools: tools::Tools,
    pub emulator: Emulator,
    bridges: Option<crate::emulator_gaps::Bridges>,
}

impl TestStack {
    pub fn start() -> Result<TestStack> {
        let tools = tools::ensure()?;
        let port = crate::emulator::free_port()?;
        let emulator = Emulator::start(&tools, port)?;
        let bridges = match crate::emulator_gaps::Bridges::start(&emulator) {
            Ok(bridges) => bridges,
            Err(e) => {
                emulator.stop();
                return Err(e);
            }
        };
        Ok(TestStack {
            tools,
            emulator,
            bridges: Some(bridges),
        })
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        // The bridges first: they talk to the emulator until they stop.
        drop(self.bridges.take());
        self.emulator.stop();
    }
}

/// A test's own local stack with the example stack and the breaker deployed: the stacks'
/// outputs, and clients for the emulator.
pub struct Deployment {
    pub example: HashMap<String, String>,
    pub breaker: HashMap<String, String>,
    pub sqs: aws_sdk_sqs::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub logs: crate::logs::Logs,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub events: aws_sdk_eventbridge::Client,
    /// Last, so that it is dropped (and the emulator stopped) last.
    pub local: TestStack,
}

impl Deployment {
    /// Starts an emulator and deploys both stacks with these parameters. The breaker watches
    /// the `errors` signal unless `breaker` chooses another `AlarmSignal`: the recovery tests
    /// drive their outages through the consumer's errors, on whose local timing they rest; the
    /// signal tests (`xtask/tests/signals.rs`) choose theirs.
    pub fn start(
        example: &Parameters,
        breaker: &Parameters,
    ) -> Result<(tokio::runtime::Runtime, Deployment)> {
        let local = TestStack::start()?;
        let runtime = tokio::runtime::Runtime::new()?;
        let mut breaker = breaker.clone();
        if !breaker.iter().any(|(name, _)| *name == "AlarmSignal") {
            breaker.insert(0, ("AlarmSignal", "errors".into()));
        }
        runtime.block_on(deploy_example_and_breaker(
            &local.tools,
            &local.emulator,
            example,
            &breaker,
        ))?;
        let deployed = runtime.block_on(Deployment::connect(local))?;
        Ok((runtime, deployed))
    }

    /// Clients for `local`'s emulator and the outputs of the example stack and the breaker,
    /// both already deployed there (by a test that deploys the breaker its own way).
    pub async fn connect(local: TestStack) -> Result<Deployment> {
        let config = crate::aws::config(&local.emulator).await;
        Ok(Deployment {
            example: crate::aws::stack_outputs(&config, EXAMPLE_STACK).await?,
            breaker: crate::aws::stack_outputs(&config, BREAKER_STACK).await?,
            sqs: aws_sdk_sqs::Client::new(&config),
            lambda: aws_sdk_lambda::Client::new(&config),
            sfn: aws_sdk_sfn::Client::new(&config),
            logs: crate::logs::Logs::new(&config)?,
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            events: aws_sdk_eventbridge::Client::new(&config),
            local,
        })
    }

    pub fn queue(&self) -> &str {
        &self.example["QueueUrl"]
    }

    pub fn function(&self) -> &str {
        &self.example["ConsumerFunctionName"]
    }

    pub fn mapping(&self) -> &str {
        &self.example["EventSourceMappingId"]
    }

    /// Starts an execution with the event AWS sends when the breaker's alarm goes to ALARM
    /// (what opening by hand does), stamped with the current time: the breaker ignores an
    /// ALARM event older than the circuit's last close.
    pub async fn start_alarm_execution(&self) -> Result<String> {
        let event = crate::breaker::alarm_event_now(
            &self.breaker["AlarmName"],
            "000000000000",
            crate::sam::REGION,
        );
        crate::breaker::start(&self.sfn, &self.breaker["StateMachineArn"], &event).await
    }

    /// Starts an execution with the alarm event as it would have been sent at `time`
    /// (`2026-12-01T10:11:12Z`): a late delivery, or a duplicate of an earlier event.
    pub async fn start_alarm_execution_at(&self, time: &str) -> Result<String> {
        let event = crate::breaker::alarm_event(
            &self.breaker["AlarmName"],
            "000000000000",
            crate::sam::REGION,
            time,
        );
        crate::breaker::start(&self.sfn, &self.breaker["StateMachineArn"], &event).await
    }

    /// The circuit item of the consumer's mapping, if the breaker wrote one.
    pub async fn circuit(&self) -> Result<Option<crate::breaker::Circuit>> {
        crate::breaker::circuit(
            &self.dynamodb,
            &self.breaker["CircuitTableName"],
            self.mapping(),
        )
        .await
    }

    /// The breaker's alarm.
    pub async fn alarm(&self) -> Result<crate::breaker::Alarm> {
        crate::breaker::alarm(&self.cloudwatch, &self.breaker["AlarmName"]).await
    }

    /// Puts the breaker's alarm in `value` (`OK`, `ALARM`) as CloudWatch would.
    pub async fn set_alarm(&self, value: &str, reason: &str) -> Result<()> {
        crate::breaker::set_alarm_state(&self.cloudwatch, &self.breaker["AlarmName"], value, reason)
            .await
    }

    /// The consumer's mapping.
    pub async fn consumer_mapping(&self) -> Result<crate::breaker::Mapping> {
        crate::breaker::mapping(&self.lambda, self.mapping()).await
    }

    /// The rejitter's mapping on the consumer's queue (deployed with `RejitterEnabled`).
    pub async fn rejitter_mapping(&self) -> Result<crate::breaker::Mapping> {
        crate::breaker::rejitter_mapping(&self.lambda, &self.example["QueueArn"], self.function())
            .await
    }

    pub async fn mapping_state(&self) -> Result<String> {
        crate::breaker::mapping_state(&self.lambda, self.mapping()).await
    }

    pub async fn outage(&self, on: bool) -> Result<()> {
        crate::consumer::set_should_error(&self.lambda, self.function(), on).await
    }

    /// Waits (up to 2 minutes) until the consumer has processed every message of `sent`, by
    /// content fingerprint, then checks that nothing reached the dead-letter queue.
    pub async fn every_message_processed(&self, sent: &[crate::traffic::Sent]) -> Result<()> {
        // By content: the rejitter re-sends a message under a new message id.
        let wanted: std::collections::HashSet<&str> =
            sent.iter().map(|s| s.fingerprint.as_str()).collect();
        let last = std::sync::Mutex::new(String::new());
        crate::wait::eventually(
            "every message to be processed",
            std::time::Duration::from_secs(120),
            || async {
                let done: std::collections::HashSet<String> =
                    crate::traffic::processed_fingerprints(&self.logs, self.function())
                        .await?
                        .into_iter()
                        .collect();
                let missing: Vec<&crate::traffic::Sent> = sent
                    .iter()
                    .filter(|s| !done.contains(&s.fingerprint))
                    .collect();
                let depth = crate::status::queue_depth(&self.sqs, self.queue()).await?;
                if let Ok(mut last) = last.lock() {
                    let first: Vec<&str> = missing
                        .iter()
                        .take(5)
                        .map(|s| s.message_id.as_str())
                        .collect();
                    *last = format!(
                        "{} of {} missing (sent as {first:?}), queue {depth:?}",
                        missing.len(),
                        wanted.len()
                    );
                }
                Ok(missing.is_empty().then_some(()))
            },
        )
        .await
        .with_context(|| {
            format!(
                "last seen: {}",
                last.lock().map(|l| l.clone()).unwrap_or_default()
            )
        })?;
        let dead =
            crate::status::queue_depth(&self.sqs, &self.example["DeadLetterQueueUrl"]).await?;
        anyhow::ensure!(dead.total() == 0, "nothing may reach the DLQ: {dead:?}");
        Ok(())
    }
}
