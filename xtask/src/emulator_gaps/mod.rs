//! Bridges for the local emulator's known gaps (MiniStack 1.5.33), and only those. Product
//! code never knows it runs locally: these bridges do, from the outside, what AWS itself
//! would do. What cannot be done from outside, a shim loaded into the emulator process
//! patches (`ministack_shim/sitecustomize.py`, on the emulator's PYTHONPATH, see
//! [`install_shim`]): it only makes the emulator accept, store and return what AWS does, or
//! reports what cannot be observed from outside; behaviour stays here.
//!
//! 1. Lambda invocations made by an SQS event source mapping publish no `AWS/Lambda` metrics
//!    (the emulator records them only for the Invoke API). AWS publishes `Invocations` and
//!    `Errors` for every invocation. The bridge below follows the emulator's log, where it
//!    reports each mapping invocation's outcome, and puts the datapoints AWS would have
//!    recorded.
//! 2. Alarms: the emulator evaluates them only when PutMetricData or PutMetricAlarm is called,
//!    ignores their dimensions, the M-out-of-N rule and metric math, and an alarm state
//!    change emits no EventBridge event; PutEvents refuses `aws.*` sources, so the event
//!    cannot be injected either. The shim switches the emulator's evaluation off (it fought
//!    the bridge's states). [`alarm_bridge`] evaluates each metric alarm's own definition
//!    ([`alarm_definitions`]) on its period ([`alarm_evaluation`], [`metric_math`]) and
//!    delivers every transition, its own, SetAlarmState's and the composites' (which the
//!    emulator re-evaluates when a child changes), read from the alarm history
//!    ([`alarm_history`]), as the documented event ([`alarm_events`]) to the targets of the
//!    rules that match it ([`event_delivery`]), shaped by each target's `Input`,
//!    `InputPath` or input transformer ([`input_transformer`]).
//!    The shim makes CloudFormation accept metric-math alarms (`Metrics`) and composite
//!    alarms, PutMetricAlarm keep `Metrics`, and the history carry milliseconds and
//!    SetAlarmState's reason data.
//! 3. An event source mapping CloudFormation creates with `Enabled: false` reads back as
//!    `State: Enabled` although the emulator does not poll it; switching it on then changes
//!    nothing. The shim gives it `State: Disabled`, as AWS, whatever deployed it.
//! 4. No `AWS/SQS` metrics. The shim counts each queue's sends, receives and deletes (API and
//!    mapping alike) per second and samples its gauges, one log line a second per queue;
//!    [`sqs_metrics`] turns those into the datapoints AWS publishes, which the bridge below
//!    puts. The alarm bridge evaluates a period of a queue's metrics once they are all in.
//! 5. An update of a function's code or configuration kills the processes of its invocations
//!    in flight (the caller gets "Runtime exited before returning a response"); on AWS they
//!    finish on the code they started with. The shim stops a busy process when its
//!    invocation ends, its last log lines in; new invocations get the new code at once.
//! 6. An invocation's log takes the lines its worker's reader queued within 50 ms of the
//!    response (then until 5 ms of quiet); later ones go to the worker's next invocation,
//!    and are lost if none comes. On a loaded machine the reader can be slower than that.
//!    The shim waits up to 500 ms for the first line and 20 ms of quiet.

pub mod alarm_bridge;
pub mod alarm_definitions;
pub mod alarm_evaluation;
pub mod alarm_events;
pub mod alarm_history;
pub mod event_delivery;
pub mod input_transformer;
pub mod metric_math;
pub mod sqs_metrics;

use crate::emulator::{log_file, Emulator};
use anyhow::Result;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One event source mapping invocation as the emulator logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingInvocation {
    pub function: String,
    pub error: bool,
}

/// Parses an emulator log line about a mapping's SQS batch invocation.
pub fn parse_mapping_invocation(line: &str) -> Option<MappingInvocation> {
    let rest = &line[line.find("ESM: Lambda ")? + "ESM: Lambda ".len()..];
    let (function, outcome) = rest.split_once(' ')?;
    let error = if outcome.starts_with("failed processing SQS batch") {
        true
    } else if outcome.starts_with("processed ") && outcome.contains(" SQS messages from ") {
        false
    } else {
        return None;
    };
    Some(MappingInvocation {
        function: function.to_string(),
        error,
    })
}

/// The `AWS/Lambda` datapoints AWS records for one invocation.
pub fn lambda_metrics(invocation: &MappingInvocation) -> Vec<MetricDatum> {
    let datum = |name: &str, value: f64| {
        MetricDatum::builder()
            .metric_name(name)
            .dimensions(
                Dimension::builder()
                    .name("FunctionName")
                    .value(&invocation.function)
                    .build(),
            )
            .unit(StandardUnit::Count)
            .value(value)
            .build()
    };
    vec![
        datum("Invocations", 1.0),
        datum("Errors", if invocation.error { 1.0 } else { 0.0 }),
    ]
}

/// Follows the emulator's log from its current end and publishes mapping invocation
/// metrics and the queues' metrics until `stop` is set; `sqs_reported_through` is the last
/// second of queue reports put (the shim reports every queue's second at once, in order).
pub async fn run_metrics_bridge(
    emulator: &Emulator,
    sqs_reported_through: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&crate::aws::config(emulator).await);
    let mut file = std::fs::File::open(log_file(emulator.port))?;
    let mut offset = file.seek(SeekFrom::End(0))?;
    let mut pending = String::new();
    let mut queues = sqs_metrics::Activity::default();
    while !stop.load(Ordering::Relaxed) {
        let mut chunk = Vec::new();
        file.seek(SeekFrom::Start(offset))?;
        offset += file.read_to_end(&mut chunk)? as u64;
        pending.push_str(&String::from_utf8_lossy(&chunk));
        let (mut lambda, mut sqs, mut through) = (Vec::new(), Vec::new(), 0);
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            if let Some(invocation) = parse_mapping_invocation(&line) {
                lambda.extend(lambda_metrics(&invocation));
            } else if let Some(report) = sqs_metrics::parse(&line) {
                through = through.max(report.second);
                sqs.extend(queues.datums(&report));
            }
        }
        put_metrics(&cloudwatch, "AWS/Lambda", lambda).await;
        put_metrics(&cloudwatch, "AWS/SQS", sqs).await;
        sqs_reported_through.fetch_max(through, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

/// PutMetricData in requests of at most 1000 datapoints (the API's limit).
async fn put_metrics(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    datums: Vec<MetricDatum>,
) {
    for chunk in datums.chunks(1000) {
        let put = cloudwatch
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(chunk.to_vec()))
            .send()
            .await;
        if let Err(e) = put {
            eprintln!(
                "emulator gap bridge: PutMetricData {namespace} failed: {}",
                aws_smithy_types::error::display::DisplayErrorContext(e)
            );
        }
    }
}

/// Runs the bridges on a background thread for as long as the returned guard lives.
pub struct Bridges {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bridges {
    pub fn start(emulator: &Emulator) -> Result<Bridges> {
        let stop = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (emulator, flag) = (emulator.clone(), stop.clone());
        let sqs_reported_through = Arc::new(AtomicI64::new(0));
        let thread = std::thread::spawn(move || {
            let (metrics, alarms) = runtime.block_on(async {
                tokio::join!(
                    run_metrics_bridge(&emulator, sqs_reported_through.clone(), flag.clone()),
                    alarm_bridge::run(&emulator, sqs_reported_through.clone(), flag.clone())
                )
            });
            for result in [metrics, alarms] {
                if let Err(e) = result {
                    eprintln!("emulator gap bridge stopped: {e:#}");
                }
            }
        });
        Ok(Bridges {
            stop,
            thread: Some(thread),
        })
    }

    /// Blocks until the bridges end (for the detached `local bridge` process).
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Bridges {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The emulator-side patches, written into `dir` for the emulator's PYTHONPATH; returns the
/// directory to put there.
pub fn install_shim(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let shim = dir.join("ministack-shim");
    std::fs::create_dir_all(&shim)?;
    std::fs::write(
        shim.join("sitecustomize.py"),
        include_str!("ministack_shim/sitecustomize.py"),
    )?;
    Ok(shim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_failed_and_processed_batches_from_the_emulator_log() {
        let failed = "2026-11-26 19:34:28 WARNING [lambda] ESM: Lambda my-fn failed processing SQS batch from q (errorType=SimulatedOutage errorMessage=x)";
        assert_eq!(
            parse_mapping_invocation(failed),
            Some(MappingInvocation {
                function: "my-fn".into(),
                error: true
            })
        );
        let ok =
            "2026-11-26 19:34:28 INFO [lambda] ESM: Lambda my-fn processed 10 SQS messages from q";
        assert_eq!(
            parse_mapping_invocation(ok),
            Some(MappingInvocation {
                function: "my-fn".into(),
                error: false
            })
        );
        let partial =
            "INFO [lambda] ESM: Lambda my-fn processed 7 SQS messages from q (3 partial failures)";
        assert_eq!(
            parse_mapping_invocation(partial).map(|i| i.error),
            Some(false)
        );
    }

    #[test]
    fn ignores_other_lines() {
        assert_eq!(parse_mapping_invocation("ESM: Lambda my-fn output:"), None);
        assert_eq!(parse_mapping_invocation("{\"level\":\"INFO\"}"), None);
        assert_eq!(parse_mapping_invocation(""), None);
    }

    #[test]
    fn an_error_records_one_invocation_and_one_error() {
        let metrics = lambda_metrics(&MappingInvocation {
            function: "f".into(),
            error: true,
        });
        let values: Vec<_> = metrics
            .iter()
            .map(|m| {
                (
                    m.metric_name().unwrap_or_default(),
                    m.value().unwrap_or(-1.0),
                )
            })
            .collect();
        assert_eq!(values, vec![("Invocations", 1.0), ("Errors", 1.0)]);
        assert_eq!(metrics[1].dimensions()[0].value(), Some("f"));
    }
}
