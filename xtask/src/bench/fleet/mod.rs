//! `cargo xtask bench fleet`: figures, not pass/fail. One breaker deployment guards a fleet
//! of example consumers, each on its own queue with its own attachment and alarm (on its
//! function's `Errors`, 10 s periods). Under steady traffic to all, a few fail at overlapping
//! times; measured are each failing one's time from outage start to circuit open (mapping
//! `Disabled`) and from heal to close (mapping `Enabled`), the messages sent, processed, lost
//! and dead-lettered per consumer, whether the healthy ones' mappings stayed as they were and
//! no execution named them, and how long one more attachment takes to deploy meanwhile.
//!
//! The consumers are the example stack's (visibility 5 s, timeout 3 s, 5 receives before
//! the DLQ), several to a generated stack ([`crate::fleet`]).

mod figures;

pub use figures::*;

use crate::fleet::{self, Consumer, Shape};
use crate::shapes::Steady;
use crate::stack::{fast_breaker, fast_example, Deployment};
use anyhow::{ensure, Context, Result};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// The consumers' alarms' period (high resolution; 60 s on AWS).
const PERIOD_S: i32 = 10;
const SHAPE: Shape = Shape {
    visibility_timeout_s: 5,
    timeout_s: 3,
    max_receive_count: 5,
};
/// Consumers per generated stack: three or four stacks deploy at once.
const PER_STACK: usize = 7;
/// Traffic before the first outage.
const WARM_UP: Duration = Duration::from_secs(10);
/// When, from the first outage, the extra attachment's deploy starts.
const EXTRA_AT: Duration = Duration::from_secs(30);
/// After the traffic stops, how long to wait for every message to be processed or
/// dead-lettered before the rest counts as lost.
const DRAIN_WITHIN: Duration = Duration::from_secs(180);

async fn read_mapping(lambda: &aws_sdk_lambda::Client, uuid: &str) -> Result<MappingConfig> {
    let m = lambda
        .get_event_source_mapping()
        .uuid(uuid)
        .send()
        .await
        .context("GetEventSourceMapping")?;
    Ok(mapping_config(&m))
}

pub fn run(consumers: usize, failing: usize, rate: usize) -> Result<()> {
    ensure!(consumers >= 1, "--consumers must be at least 1");
    ensure!(
        failing <= consumers,
        "--failing {failing} is more than --consumers {consumers}"
    );
    let schedule = Schedule {
        stagger: Duration::from_secs(20),
        outage: Duration::from_secs(60),
    };
    println!(
        "fleet: one breaker deployment, {consumers} attached consumers on their own queues \
         (each sent {rate} message(s) a second), {failing} failing {} s apart for {} s each; \
         alarms on each function's Errors, {PERIOD_S} s periods; one local stack",
        schedule.stagger.as_secs(),
        schedule.outage.as_secs()
    );
    let started = Instant::now();
    let (runtime, d) = Deployment::start(&fast_example(), &fast_breaker())?;
    eprintln!("==> breaker deployed after {:.0?}", started.elapsed());
    let t = Instant::now();
    // One more than the fleet: the extra attachment's consumer is there before it attaches.
    let all = fleet::deploy_consumers(&d, "fleet", consumers + 1, PER_STACK, SHAPE)?;
    let consumers_deploy = t.elapsed();
    eprintln!(
        "==> {} consumers deployed in {consumers_deploy:.0?}",
        all.len()
    );
    let (fleet_consumers, extra) = all.split_at(consumers);
    let report = runtime.block_on(measure(
        &d,
        fleet_consumers,
        &extra[0],
        failing,
        rate,
        schedule,
    ))?;
    println!();
    println!(
        "Setup: {} consumers in {} generated stacks deployed at once in {:.0} s; {consumers} \
         attachments created at once, all complete after {:.0} s (each {:.0} to {:.0} s from \
         its CreateStack)",
        all.len(),
        all.len().div_ceil(PER_STACK),
        consumers_deploy.as_secs_f64(),
        report.attach_all.as_secs_f64(),
        report.attach_each.0.as_secs_f64(),
        report.attach_each.1.as_secs_f64(),
    );
    println!();
    print!("{}", table(&report.rows));
    println!();
    println!(
        "Mappings compared: GetEventSourceMapping before the traffic and after the drain, every \
         field but {} (it changes with each poll).",
        VOLATILE.join(", ")
    );
    println!(
        "One more attachment (consumer {}), deployed {} s after the first outage began, with \
         the fleet running: {:.1} s from CreateStack to CREATE_COMPLETE.",
        consumers + 1,
        EXTRA_AT.as_secs(),
        report.extra_attach.as_secs_f64()
    );
    Ok(())
}

struct Report {
    attach_all: Duration,
    attach_each: (Duration, Duration),
    rows: Vec<Row>,
    extra_attach: Duration,
}

async fn measure(
    d: &Deployment,
    consumers: &[Consumer],
    extra: &Consumer,
    failing: usize,
    rate: usize,
    schedule: Schedule,
) -> Result<Report> {
    let config = crate::aws::config(&d.local.emulator).await;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    let mut attachments = Vec::new();
    for c in consumers.iter().chain([extra]) {
        let alarm = fleet::errors_alarm(&d.cloudwatch, &c.function, PERIOD_S).await?;
        attachments.push((
            c.function.clone(),
            fleet::attachment(&c.function, &c.queue_arn, &alarm),
        ));
    }
    let extra_attachment = attachments.pop().context("the extra attachment")?;
    let t = Instant::now();
    let each = fleet::attach_all(&cfn, &attachments).await?;
    let attach_all = t.elapsed();
    let attach_each = (
        each.iter().min().copied().unwrap_or_default(),
        each.iter().max().copied().unwrap_or_default(),
    );
    eprintln!("==> {} attachments created in {attach_all:.0?}", each.len());

    let mut before = Vec::new();
    for c in consumers {
        before.push(read_mapping(&d.lambda, &c.mapping).await?);
    }
    let failing_idx = failing_indices(consumers.len(), failing);
    let senders: Vec<Steady> = consumers
        .iter()
        .map(|c| Steady::on(&d.sqs, &c.queue_url, &c.function, rate))
        .collect();
    tokio::time::sleep(WARM_UP).await;

    let t0 = Instant::now();
    let extra_deploy = {
        let cfn = cfn.clone();
        tokio::spawn(async move {
            tokio::time::sleep(EXTRA_AT).await;
            let each = fleet::attach_all(&cfn, &[extra_attachment]).await?;
            each.first().copied().context("no deploy time")
        })
    };
    let mut timelines = vec![Timeline::default(); failing_idx.len()];
    loop {
        for (k, &i) in failing_idx.iter().enumerate() {
            let c = &consumers[i];
            let tl = &mut timelines[k];
            let at = t0.elapsed();
            if tl.failed_at.is_none() && at >= schedule.stagger * k as u32 {
                crate::consumer::set_should_error(&d.lambda, &c.function, true).await?;
                tl.failed_at = Some(t0.elapsed());
                eprintln!("==> {} failing at {:.0?}", c.function, t0.elapsed());
            }
            if let (Some(failed), None) = (tl.failed_at, tl.healed_at) {
                if at >= failed + schedule.outage {
                    crate::consumer::set_should_error(&d.lambda, &c.function, false).await?;
                    tl.healed_at = Some(t0.elapsed());
                    eprintln!("==> {} healed at {:.0?}", c.function, t0.elapsed());
                }
            }
            let state = crate::breaker::mapping_state(&d.lambda, &c.mapping).await?;
            let was = *tl;
            tl.observe(&state, t0.elapsed());
            if was != *tl {
                eprintln!("==> {} {state} at {:.0?}", c.function, t0.elapsed());
            }
        }
        if timelines.iter().all(|t| t.done(t0.elapsed())) {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let extra_attach = extra_deploy.await??;

    let mut sent = Vec::new();
    for s in senders {
        sent.push(s.stop().await?);
    }
    eprintln!("==> traffic stopped at {:.0?}; draining", t0.elapsed());
    let mut dead: Vec<HashSet<String>> = vec![HashSet::new(); consumers.len()];
    let mut processed: Vec<HashSet<String>> = vec![HashSet::new(); consumers.len()];
    let drain = Instant::now();
    loop {
        for (i, c) in consumers.iter().enumerate() {
            processed[i] = crate::traffic::processed_fingerprints(&d.logs, &c.function)
                .await?
                .into_iter()
                .collect();
            dead[i].extend(take_dead_letters(&d.sqs, &c.dlq_url).await?);
        }
        let accounted =
            (0..consumers.len()).all(|i| counts(&sent[i], &processed[i], &dead[i]).lost == 0);
        if accounted || drain.elapsed() >= DRAIN_WITHIN {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }

    let named = fleet::executions_by_attachment(d).await?;
    let mut rows = Vec::new();
    for (i, c) in consumers.iter().enumerate() {
        let failing_k = failing_idx.iter().position(|&f| f == i);
        let naming: Vec<&String> = named
            .iter()
            .filter(|(_, a)| a.as_deref() == Some(c.function.as_str()))
            .map(|(arn, _)| arn)
            .collect();
        let mut opened = 0;
        for arn in &naming {
            let states = crate::breaker::visited_states(&d.sfn, arn).await?;
            opened += usize::from(states.iter().any(|s| s == "WaitBeforeProbe"));
        }
        let changed = match failing_k {
            Some(_) => None,
            None => Some(changed(
                &before[i],
                &read_mapping(&d.lambda, &c.mapping).await?,
            )),
        };
        rows.push(Row {
            name: c.function.clone(),
            timeline: failing_k.map(|k| timelines[k]),
            counts: counts(&sent[i], &processed[i], &dead[i]),
            changed,
            executions: naming.len(),
            opened,
        });
    }
    Ok(Report {
        attach_all,
        attach_each,
        rows,
        extra_attach,
    })
}

/// Receives (and hides for the rest of the run) what the dead-letter queue holds; the
/// messages' fingerprints.
async fn take_dead_letters(sqs: &aws_sdk_sqs::Client, dlq_url: &str) -> Result<HashSet<String>> {
    let mut ids = HashSet::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(3600)
            .message_attribute_names("All")
            .send()
            .await
            .context("ReceiveMessage from the DLQ")?;
        let got = out.messages();
        if got.is_empty() {
            return Ok(ids);
        }
        ids.extend(got.iter().map(crate::traffic::received_fingerprint));
    }
}
