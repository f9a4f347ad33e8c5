//! `cargo xtask bench signals`: figures, not pass/fail. For each way a consumer fails (and two
//! healthy ones), one local stack with the breaker's created alarm at its defaults but for the
//! period: steady traffic, then the consumer fails that way; measured are the time from the
//! first failure to the circuit open (or never), the messages in the dead-letter queue and
//! the circuits opened.
//!
//! Time is scaled: the alarm's period is 10 s here where AWS publishes `AWS/SQS` and
//! `AWS/Lambda` metrics per minute (60 s periods), so the consumer's timeouts and batch times
//! are a sixth of the AWS figures they stand for; an AWS time is about six times the local
//! one, plus CloudWatch's publication delay (a minute or two).

use crate::shapes::{self, Outage};
use crate::stack::{fast_breaker, Deployment, Parameters};
use anyhow::Result;
use std::time::Duration;

/// AWS seconds per local second.
const SCALE: u64 = 6;

struct Shape {
    name: &'static str,
    /// The example consumer's variables during the outage.
    failing: &'static [(&'static str, &'static str)],
    /// Example stack parameters besides the defaults below.
    example: &'static [(&'static str, &'static str)],
    /// Does a breaker open on it?
    fails: bool,
}

const SHAPES: [Shape; 6] = [
    Shape {
        name: "raises",
        failing: &[("SHOULD_ERROR", "true")],
        example: &[],
        fails: true,
    },
    Shape {
        name: "returns every record in batchItemFailures",
        failing: &[("FAILURE_RATE", "1")],
        example: &[],
        fails: true,
    },
    Shape {
        name: "returns half of its records in batchItemFailures",
        failing: &[("FAILURE_RATE", "0.5")],
        example: &[],
        fails: true,
    },
    Shape {
        name: "hangs (timeout 50 s, 300 s on AWS's scale)",
        failing: &[("LATENCY_MS", "600000")],
        example: &[
            ("ConsumerTimeoutSeconds", "50"),
            ("VisibilityTimeoutSeconds", "60"),
        ],
        fails: true,
    },
    Shape {
        name: "healthy, one poison message in steady traffic",
        failing: &[],
        example: &[("PoisonMarker", "traffic-3-0"), ("MaxReceiveCount", "3")],
        fails: false,
    },
    Shape {
        name: "healthy, batches of 6.7 s (40 s on AWS's scale)",
        // Slow from the start: the emulator cuts short the invocations running when a
        // function's configuration changes, which AWS does not.
        failing: &[],
        example: &[("LatencyMs", "6700")],
        fails: false,
    },
];

/// Runs the shapes whose name contains `only` (all when empty).
pub fn run(rate: usize, only: &str) -> Result<()> {
    println!(
        "alarm signals: the created alarm (AlarmSignal any, 10 s periods), {rate} messages a \
         second; one local stack per shape"
    );
    let mut rows = Vec::new();
    for shape in SHAPES.iter().filter(|s| s.name.contains(only)) {
        let mut example: Parameters = vec![
            ("VisibilityTimeoutSeconds", "30".into()),
            ("ConsumerTimeoutSeconds", "20".into()),
            ("MaxReceiveCount", "5".into()),
        ];
        for (name, value) in shape.example {
            example.retain(|(n, _)| n != name);
            example.push((name, value.to_string()));
        }
        let mut breaker = fast_breaker();
        breaker.extend([
            ("AlarmSignal", "any".to_string()),
            ("AlarmPeriodSeconds", "10".to_string()),
        ]);
        let (runtime, d) = Deployment::start(&example, &breaker)?;
        let watch = if shape.fails { 150 } else { 120 };
        let (outage, dead) = runtime.block_on(async {
            let outage = shapes::outage(
                &d,
                shape.name,
                shape.failing,
                rate,
                Duration::from_secs(watch),
            )
            .await?;
            // Failed batches come back after the visibility timeout: let them settle.
            tokio::time::sleep(Duration::from_secs(40)).await;
            let dead = crate::status::queue_depth(&d.sqs, &d.example["DeadLetterQueueUrl"]).await?;
            anyhow::Ok((outage, dead.total()))
        })?;
        eprintln!("{}: {:?} {dead}", shape.name, outage.opened_after);
        rows.push((shape.name, outage, dead, watch));
    }
    println!();
    println!("| The consumer | circuit opened after (local) | (AWS's scale, before metric delay) | in the DLQ | circuits |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (
        name,
        Outage {
            opened_after,
            sent,
            circuits,
        },
        dead,
        watch,
    ) in rows
    {
        let (local, aws) = match opened_after {
            Some(t) => (
                format!("{:.0} s", t.as_secs_f64()),
                format!("{:.0} s", t.as_secs_f64() * SCALE as f64),
            ),
            None => (format!("never ({watch} s watched)"), "never".to_string()),
        };
        println!(
            "| {name} | {local} | {aws} | {dead} of {} | {circuits} |",
            sent.len()
        );
    }
    Ok(())
}
