//! Text for people: `status` (one consumer, or each of a fleet's), `watch` and `history`
//! output.

use crate::fleet::BUILT_IN;
use crate::history::PastCircuit;
use crate::status::{Row, Status};
use controller::adapters::queue::Depth;
use std::time::{Duration, UNIX_EPOCH};

/// Epoch milliseconds as an RFC 3339 UTC time, to the second.
pub fn time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn span(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

fn depth(d: &Depth) -> String {
    format!(
        "visible {}, in flight {}, delayed {}",
        d.visible, d.in_flight, d.delayed
    )
}

pub fn status(s: &Status, now_ms: u64) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<13}{value}\n"));
    let since = s
        .since_ms
        .map(|at| {
            format!(
                " since {} ({} ago)",
                time(at),
                span(now_ms.saturating_sub(at))
            )
        })
        .unwrap_or_default();
    line("circuit", format!("{}{since}", s.phase.as_str()));
    if let Some(reason) = s.reason.as_ref().filter(|r| !r.is_empty()) {
        line("reason", reason.clone());
    }
    if let Some(owner) = &s.owner {
        line("owner", owner.clone());
    }
    if let Some(url) = &s.owner_console_url {
        line("console", url.clone());
    }
    if let Some(state) = &s.current_state {
        let mut now = state.clone();
        if let Some(probes) = s.probes {
            now.push_str(&format!("; {probes} probes made"));
        }
        if let Some(last) = &s.last_probe {
            now.push_str(&format!(", last {last}"));
        }
        if let Some(next) = s.next_probe_ms {
            now.push_str(&format!(
                "; next probe at {} (in {})",
                time(next),
                span(next.saturating_sub(now_ms))
            ));
        }
        line("workflow", now);
    }
    line(
        "mapping",
        match (&s.mapping_id, s.mapping_maximum_concurrency) {
            (Some(id), Some(cap)) => format!("{id} {}, MaximumConcurrency {cap}", s.mapping_state),
            (Some(id), None) => format!("{id} {}", s.mapping_state),
            (None, _) => s.mapping_state.clone(),
        },
    );
    line(
        "alarm",
        format!(
            "{} {} ({}, signal {})",
            s.alarm_name,
            s.alarm_state.as_deref().unwrap_or("(no such alarm)"),
            s.alarm_kind.as_deref().unwrap_or("unknown kind"),
            s.alarm_signal
        ),
    );
    if let Some(note) = &s.alarm_note {
        line("", note.clone());
    }
    line("queue", depth(&s.queue));
    if let Some(dead) = &s.dead_letter_queue {
        line("dead letters", depth(dead));
    }
    out
}

/// `status` of every consumer: a deployment whose only consumer is its built-in one prints
/// that consumer's status alone, as a single-consumer stack always has; a fleet prints one
/// block per consumer, headed by its id, function and queue.
pub fn fleet(rows: &[Row], now_ms: u64) -> String {
    if let [Row {
        id,
        status: Some(only),
        ..
    }] = rows
    {
        if id == BUILT_IN {
            return status(only, now_ms);
        }
    }
    let blocks: Vec<String> = rows
        .iter()
        .map(|row| {
            let mut block = format!(
                "{:<13}{} (function {}, queue {})\n",
                "consumer",
                row.id,
                or_unknown(&row.function),
                or_unknown(&row.queue_arn)
            );
            if let Some(s) = &row.status {
                block.push_str(&status(s, now_ms));
            }
            if let Some(error) = &row.error {
                block.push_str(&format!("{:<13}{error}\n", "error"));
            }
            block
        })
        .collect();
    if blocks.is_empty() {
        return "no consumer is attached to this breaker deployment\n".into();
    }
    blocks.join("\n")
}

fn or_unknown(text: &str) -> &str {
    if text.is_empty() {
        "unknown"
    } else {
        text
    }
}

pub fn history(past: &[PastCircuit]) -> String {
    if past.is_empty() {
        return "no circuit opened in that time\n".into();
    }
    let mut out = format!(
        "{:<21} {:<21} {:>10} {:>6}  {:<16} {}\n",
        "opened", "ended", "duration", "probes", "ending", "execution"
    );
    for c in past {
        let (ended, lasted) = match c.ended_ms {
            Some(end) => (time(end), span(end.saturating_sub(c.opened_ms))),
            None => ("-".into(), "-".into()),
        };
        let ending = serde_json::to_value(c.ending)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<21} {:<21} {:>10} {:>6}  {:<16} {}\n",
            time(c.opened_ms),
            ended,
            lasted,
            c.probes,
            ending,
            c.execution
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use controller::core::operator::{Ending, Phase};

    fn open_status() -> Status {
        Status {
            phase: Phase::Open,
            since_ms: Some(1_764_583_872_000),
            reason: Some("alarm orders-errors: threshold crossed".into()),
            owner: Some("arn:aws:states:us-east-1:123456789012:execution:sm:e1".into()),
            owner_console_url: Some("https://console/e1".into()),
            current_state: Some("WaitBeforeProbe".into()),
            probes: Some(3),
            last_probe: Some("Failed".into()),
            next_probe_ms: Some(1_764_583_992_000),
            mapping_id: Some("uuid-1".into()),
            mapping_state: "Disabled".into(),
            mapping_maximum_concurrency: None,
            alarm_name: "orders-errors".into(),
            alarm_state: Some("ALARM".into()),
            alarm_kind: Some("metric".into()),
            alarm_signal: "errors".into(),
            alarm_note: None,
            queue: Depth {
                visible: 120,
                in_flight: 1,
                delayed: 0,
            },
            dead_letter_queue: Some(Depth::default()),
        }
    }

    #[test]
    fn status_says_what_when_why_and_what_next() {
        let text = status(&open_status(), 1_764_583_972_000);
        assert_eq!(
            text,
            "circuit      OPEN since 2025-12-01T10:11:12Z (1m 40s ago)\n\
             reason       alarm orders-errors: threshold crossed\n\
             owner        arn:aws:states:us-east-1:123456789012:execution:sm:e1\n\
             console      https://console/e1\n\
             workflow     WaitBeforeProbe; 3 probes made, last Failed; next probe at \
             2025-12-01T10:13:12Z (in 20s)\n\
             mapping      uuid-1 Disabled\n\
             alarm        orders-errors ALARM (metric, signal errors)\n\
             queue        visible 120, in flight 1, delayed 0\n\
             dead letters visible 0, in flight 0, delayed 0\n"
        );
    }

    #[test]
    fn history_lists_each_circuit_with_its_ending() {
        let text = history(&[PastCircuit {
            execution: "arn:e1".into(),
            opened_ms: 1_764_583_872_000,
            ended_ms: Some(1_764_584_172_000),
            probes: 4,
            ending: Ending::Closed,
        }]);
        let row = text.lines().nth(1).expect("a row");
        assert!(
            row.starts_with("2025-12-01T10:11:12Z  2025-12-01T10:16:12Z")
                && row.contains("5m")
                && row.contains(" 4  closed")
                && row.ends_with("arn:e1"),
            "{row}"
        );
        assert_eq!(history(&[]), "no circuit opened in that time\n");
    }
}
