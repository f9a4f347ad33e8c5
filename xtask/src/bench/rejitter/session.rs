//! One rejitter process between the two fakes: started as Lambda starts it, invoked one event
//! at a time, and stopped for its peak RSS and what it logged.

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::fake_sqs::FakeSqs;
use super::rejitter_env;
use super::runtime_api::{Outcome, RuntimeApi};
use super::sqs_protocol::SqsTally;

/// What a stopped process leaves.
pub struct Stopped {
    pub peak_rss_kib: u64,
    pub emf: EmfTally,
    pub sqs: SqsTally,
}

pub struct Session {
    pub child: Child,
    pub runtime: RuntimeApi,
    pub sqs: FakeSqs,
    pub stdout: Option<JoinHandle<EmfTally>>,
    pub stderr: Option<JoinHandle<String>>,
    pub invocations: usize,
}

impl Session {
    /// The fake queue's `MaximumMessageSize` is `queue_max`.
    pub fn start(binary: &Path, sqs_latency: Duration, queue_max: usize) -> Result<Session> {
        let sqs = FakeSqs::start(sqs_latency, queue_max)?;
        let runtime = RuntimeApi::start()?;
        let mut child = Command::new(binary)
            .env_clear()
            .envs(rejitter_env(
                &runtime.server.addr.to_string(),
                &sqs.server.addr.to_string(),
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        // Read like Lambda's log pipe, so logging costs what it costs when deployed.
        let stdout = child.stdout.take().map(|out| {
            thread::spawn(move || {
                let mut tally = EmfTally::default();
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    tally.add_line(&line);
                }
                tally
            })
        });
        let stderr = child.stderr.take().map(|mut err| {
            thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                text
            })
        });
        Ok(Session {
            child,
            runtime,
            sqs,
            stdout,
            stderr,
            invocations: 0,
        })
    }

    /// Hands `event` out on `/next` and waits for its `/response`; returns the time between
    /// the two and the response.
    pub fn invoke(&mut self, event: String) -> Result<(Duration, Value)> {
        let id = format!("bench-{:08}", self.invocations);
        self.invocations += 1;
        let handed_out = Instant::now();
        self.runtime
            .events
            .send((id.clone(), event))
            .context("the fake Runtime API stopped")?;
        let done = loop {
            match self.runtime.done.recv_timeout(Duration::from_millis(200)) {
                Ok(done) => break done,
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(status) = self.child.try_wait()? {
                        bail!(
                            "the rejitter exited ({status}) during invocation {id}: {}",
                            self.stderr_tail()
                        );
                    }
                    if handed_out.elapsed() > Duration::from_secs(60) {
                        bail!("invocation {id} got no response in 60 s");
                    }
                }
                Err(RecvTimeoutError::Disconnected) => bail!("the fake Runtime API stopped"),
            }
        };
        match done.outcome {
            Outcome::Response(body) => {
                ensure!(
                    done.request_id == id,
                    "response for {}, expected {id}",
                    done.request_id
                );
                let latency = done.at.saturating_duration_since(handed_out);
                Ok((latency, serde_json::from_slice(&body)?))
            }
            Outcome::Error(body) => {
                bail!("invocation {id} failed: {}", String::from_utf8_lossy(&body))
            }
            Outcome::InitError(body) => {
                bail!("init failed: {}", String::from_utf8_lossy(&body))
            }
        }
    }

    pub fn stderr_tail(&mut self) -> String {
        let text = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        text.get(start..).unwrap_or(&text).to_owned()
    }

    /// CPU time of all the process's threads so far.
    pub fn cpu_ns(&self) -> Result<u64> {
        let tasks = format!("/proc/{}/task", self.child.id());
        let mut total = 0;
        for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
            let text = std::fs::read_to_string(task?.path().join("schedstat")).unwrap_or_default();
            total += schedstat_cpu_ns(&text).unwrap_or_default();
        }
        Ok(total)
    }

    /// Reads the peak RSS, then stops the process and collects what it logged.
    pub fn stop(mut self) -> Result<Stopped> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let peak_rss_kib = vm_hwm_kib(&status).context("no VmHWM in /proc/<pid>/status")?;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let emf = self
            .stdout
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Ok(Stopped {
            peak_rss_kib,
            emf,
            sqs: self.sqs.snapshot(),
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmHWM` (peak resident set) in KiB from the text of `/proc/<pid>/status`.
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

/// Time on CPU in ns, the first field of `/proc/<pid>/task/<tid>/schedstat`.
pub fn schedstat_cpu_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// Totals of the EMF lines a process printed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EmfTally {
    pub lines: usize,
    pub rejittered: u64,
    pub batches: u64,
    pub failures: u64,
}

impl EmfTally {
    /// Counts `line` if it is an EMF line; other log lines are skipped.
    pub fn add_line(&mut self, line: &str) {
        if !line.contains("\"_aws\"") {
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return;
        };
        let count = |name: &str| v[name].as_u64().unwrap_or_default();
        self.lines += 1;
        self.rejittered += count("MessagesRejittered");
        self.batches += count("RejitterBatches");
        self.failures += count("RejitterFailures");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_figures() {
        let status =
            "Name:\trejitter\nVmPeak:\t  20000 kB\nVmHWM:\t    5120 kB\nVmRSS:\t    4000 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(5120));
        assert_eq!(vm_hwm_kib("Name:\tx\n"), None);
        assert_eq!(schedstat_cpu_ns("123456 789 10\n"), Some(123456));
        assert_eq!(schedstat_cpu_ns(""), None);
    }

    #[test]
    fn emf_lines_are_summed_and_other_lines_skipped() {
        let mut tally = EmfTally::default();
        tally.add_line(r#"{"level":"INFO","message":"invocation done","rejittered":10}"#);
        let line = r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[]},"QueueName":"orders","MessagesRejittered":8,"RejitterBatches":1,"RejitterFailures":2}"#;
        tally.add_line(line);
        tally.add_line(line);
        assert_eq!(
            tally,
            EmfTally {
                lines: 2,
                rejittered: 16,
                batches: 2,
                failures: 4
            }
        );
    }
}
