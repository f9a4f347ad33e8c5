//! What the scenario saw, for the summary, the picture and the e2e test: the executions, the
//! probes with the backoff drawn after each, and the summary printed at the end.

use crate::breaker::HistoryStep;
use crate::status::Depth;
use serde_json::Value;
use std::time::Duration;

/// One probe, as the workflow recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRecord {
    /// Seconds since the scenario started.
    pub at: f64,
    pub attempt: u64,
    /// `Healthy`, `Failed`, `OnlyHidden`, `Empty`, `HealthCheckPassed`, `HealthCheckFailed`.
    pub outcome: String,
    /// The decision after the probe: `Backoff`, `Rejitter`, `Close`, `GiveUp`.
    pub next: String,
    pub reason: String,
    /// The wait NextBackoff drew after this probe, and the window it was drawn from.
    pub wait_s: Option<u64>,
    pub ceiling_s: Option<u64>,
}

impl ProbeRecord {
    pub fn healthy(&self) -> bool {
        matches!(self.outcome.as_str(), "Healthy" | "HealthCheckPassed")
    }

    pub fn failed(&self) -> bool {
        matches!(self.outcome.as_str(), "Failed" | "HealthCheckFailed")
    }
}

/// An execution and the states it went through.
#[derive(Debug, Clone)]
pub struct ExecutionRecord {
    pub arn: String,
    pub status: String,
    pub steps: Vec<HistoryStep>,
}

impl ExecutionRecord {
    pub fn short_name(&self) -> String {
        let name = self.arn.rsplit(':').next().unwrap_or(&self.arn);
        name.chars().take(8).collect()
    }

    pub fn visited(&self, state: &str) -> bool {
        self.steps.iter().any(|s| s.name == state)
    }

    fn exit_of(&self, state: &str) -> Option<i64> {
        self.steps
            .iter()
            .find(|s| s.name == state)
            .and_then(|s| s.exited_ms)
    }
}

/// What happened, for the summary, the picture and the e2e test.
#[derive(Debug, Clone)]
pub struct Report {
    pub started_ms: i64,
    pub outage_on_ms: i64,
    pub healed_ms: i64,
    pub executions: Vec<ExecutionRecord>,
    pub probes: Vec<ProbeRecord>,
    pub sent: usize,
    /// Distinct sent messages the consumer processed (by content fingerprint).
    pub processed: usize,
    /// Extra processings of an already processed message (at-least-once delivery).
    pub duplicates: usize,
    pub in_dlq: u64,
    pub lost: usize,
    /// Alarm states seen, in order, with the time (ms) they were first seen.
    pub alarm_states: Vec<(i64, String)>,
    pub mapping_states: Vec<(i64, String)>,
    pub depths: Vec<(i64, Depth)>,
}

impl Report {
    /// Nothing seen yet, the scenario started at `started_ms`.
    pub fn new(started_ms: i64) -> Report {
        Report {
            started_ms,
            outage_on_ms: 0,
            healed_ms: 0,
            executions: Vec::new(),
            probes: Vec::new(),
            sent: 0,
            processed: 0,
            duplicates: 0,
            in_dlq: 0,
            lost: 0,
            alarm_states: Vec::new(),
            mapping_states: Vec::new(),
            depths: Vec::new(),
        }
    }

    /// The execution that opened the circuit (the others found it already open).
    pub fn owner(&self) -> Option<&ExecutionRecord> {
        self.executions
            .iter()
            .find(|e| e.visited("WaitBeforeProbe"))
    }

    pub fn time_to_open(&self) -> Option<Duration> {
        let opened = self.owner()?.exit_of("OpenCircuit")?;
        Some(Duration::from_millis(
            (opened - self.outage_on_ms).max(0) as u64
        ))
    }

    pub fn heal_to_enabled(&self) -> Option<Duration> {
        Some(Duration::from_millis(
            (self.enabled_ms()? - self.healed_ms).max(0) as u64,
        ))
    }

    /// When the owner gave the consumer its mapping back: half-open (the slow start), or
    /// closed.
    fn enabled_ms(&self) -> Option<i64> {
        let owner = self.owner()?;
        owner
            .exit_of("StartSlowStart")
            .or_else(|| owner.exit_of("CloseCircuit"))
    }

    /// From the mapping's re-enabling: the most messages in flight in the first minute, and
    /// how long until nothing waited in the queue (none visible, none delayed).
    pub fn after_enabled(&self) -> Option<(u64, Option<Duration>)> {
        let enabled = self.enabled_ms()?;
        let after = || self.depths.iter().filter(move |(at, _)| *at >= enabled);
        let peak = after()
            .filter(|(at, _)| at - enabled <= 60_000)
            .map(|(_, d)| d.in_flight)
            .max()?;
        let drained = after()
            .find(|(_, d)| d.visible + d.delayed == 0)
            .map(|(at, _)| Duration::from_millis((at - enabled) as u64));
        Some((peak, drained))
    }

    /// State transitions, which Step Functions Standard bills: one per state entered.
    pub fn transitions(&self) -> usize {
        self.executions.iter().map(|e| e.steps.len()).sum()
    }

    pub fn summary(&self) -> String {
        let secs = |d: Option<Duration>| {
            d.map(|d| format!("{:.1} s", d.as_secs_f64()))
                .unwrap_or_else(|| "never".into())
        };
        let failed = self.probes.iter().filter(|p| p.failed()).count();
        let healthy = self.probes.iter().filter(|p| p.healthy()).count();
        let waits: Vec<String> = self
            .probes
            .iter()
            .filter_map(|p| Some(format!("{}/{}", p.wait_s?, p.ceiling_s?)))
            .collect();
        let transitions = self.transitions();
        let mut out = String::new();
        out.push_str("==> summary\n");
        out.push_str(&format!(
            "  outage -> circuit open:        {}\n",
            secs(self.time_to_open())
        ));
        out.push_str(&format!(
            "  probes made:                   {} ({failed} failed, {healthy} healthy, {} found only hidden messages)\n",
            self.probes.len(),
            self.probes.len() - failed - healthy
        ));
        out.push_str(&format!(
            "  backoff waits (drawn/window s): {}\n",
            if waits.is_empty() {
                "-".into()
            } else {
                waits.join(" ")
            }
        ));
        out.push_str(&format!(
            "  heal -> consumer re-enabled:   {}\n",
            secs(self.heal_to_enabled())
        ));
        if let Some((peak, drained)) = self.after_enabled() {
            out.push_str(&format!(
                "  after re-enabling:             peak {peak} in flight in the first minute \
                 (~{} batches of 10); nothing waiting after {}\n",
                peak.div_ceil(10),
                secs(drained)
            ));
        }
        out.push_str(&format!("  messages sent:                 {}\n", self.sent));
        out.push_str(&format!(
            "  processed:                     {} (+{} duplicate deliveries)\n",
            self.processed, self.duplicates
        ));
        out.push_str(&format!(
            "  in DLQ:                        {}\n",
            self.in_dlq
        ));
        out.push_str(&format!("  lost:                          {}\n", self.lost));
        out.push_str(&format!(
            "  executions:                    {} ({})\n",
            self.executions.len(),
            self.executions
                .iter()
                .map(|e| format!("{} {}", e.short_name(), e.status))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out.push_str(&format!(
            "  state transitions:             {transitions} (Step Functions Standard: ${:.5} at $0.025 per 1,000)\n",
            transitions as f64 * 0.025 / 1000.0
        ));
        out
    }
}

/// The probes of every execution, in time order, each with the backoff drawn after it.
pub fn probes(executions: &[ExecutionRecord], started_ms: i64) -> Vec<ProbeRecord> {
    let mut probes = Vec::new();
    for execution in executions {
        let mut pending: Option<ProbeRecord> = None;
        for step in &execution.steps {
            let circuit = step.output.as_ref().and_then(|o| o.get("circuit"));
            let field = |name: &str| circuit.and_then(|c| c.get(name));
            match step.name.as_str() {
                "Probe" => {
                    probes.extend(pending.take());
                    let Some(exited) = step.exited_ms else {
                        continue;
                    };
                    pending = Some(ProbeRecord {
                        at: (exited - started_ms) as f64 / 1000.0,
                        attempt: field("attempt").and_then(Value::as_u64).unwrap_or(0),
                        outcome: field("last_probe")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        next: field("next")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        reason: field("reason")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        wait_s: None,
                        ceiling_s: None,
                    });
                }
                "NextBackoff" => {
                    if let Some(probe) = pending.as_mut() {
                        probe.wait_s = field("wait_seconds").and_then(Value::as_u64);
                        probe.ceiling_s = field("backoff_ceiling_seconds").and_then(Value::as_u64);
                    }
                }
                _ => {}
            }
        }
        probes.extend(pending);
    }
    probes.sort_by(|a, b| a.at.total_cmp(&b.at));
    probes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(name: &str, at: i64, circuit: Value) -> HistoryStep {
        HistoryStep {
            name: name.into(),
            entered_ms: at,
            exited_ms: Some(at + 100),
            output: Some(json!({ "circuit": circuit })),
        }
    }

    fn execution(steps: Vec<HistoryStep>) -> ExecutionRecord {
        ExecutionRecord {
            arn: "arn:aws:states:us-east-1:0:execution:sm:0123456789abcdef".into(),
            status: "SUCCEEDED".into(),
            steps,
        }
    }

    #[test]
    fn probes_carry_the_backoff_drawn_after_them() {
        let e = execution(vec![
            step(
                "OpenCircuit",
                0,
                json!({"status": "Opened", "wait_seconds": 1}),
            ),
            step(
                "Probe",
                1_000,
                json!({"attempt": 1, "last_probe": "Failed", "next": "Backoff", "reason": "message m: consumer failed"}),
            ),
            step(
                "NextBackoff",
                1_200,
                json!({"next": "Backoff", "wait_seconds": 3, "backoff_ceiling_seconds": 4}),
            ),
            step(
                "Probe",
                5_000,
                json!({"attempt": 2, "last_probe": "Healthy", "next": "Rejitter", "reason": "message m: processed"}),
            ),
        ]);
        let probes = probes(&[e], 0);
        assert_eq!(probes.len(), 2);
        assert_eq!((probes[0].wait_s, probes[0].ceiling_s), (Some(3), Some(4)));
        assert!(probes[0].failed() && !probes[0].healthy());
        assert!(probes[1].healthy());
        assert_eq!(probes[1].wait_s, None);
        assert!((probes[1].at - 5.1).abs() < 1e-9);
    }

    #[test]
    fn the_summary_reports_loss_and_transitions() {
        let e = execution(vec![
            step("OpenCircuit", 2_000, json!({"status": "Opened"})),
            step("WaitBeforeProbe", 2_100, json!({})),
            step("CloseCircuit", 9_000, json!({})),
        ]);
        let report = Report {
            started_ms: 0,
            outage_on_ms: 1_000,
            healed_ms: 5_000,
            executions: vec![e],
            probes: Vec::new(),
            sent: 10,
            processed: 9,
            duplicates: 1,
            in_dlq: 0,
            lost: 1,
            alarm_states: vec![(0, "OK".into())],
            mapping_states: vec![(0, "Enabled".into())],
            depths: vec![(10_000, Depth::default())],
        };
        assert_eq!(report.time_to_open(), Some(Duration::from_millis(1_100)));
        assert_eq!(report.heal_to_enabled(), Some(Duration::from_millis(4_100)));
        assert_eq!(report.transitions(), 3);
        let summary = report.summary();
        assert!(
            summary.contains("lost:                          1"),
            "{summary}"
        );
        assert!(
            summary.contains("state transitions:             3"),
            "{summary}"
        );
    }
}
