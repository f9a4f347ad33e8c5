//! What happens next, decided from plain inputs.
//!
//! The Step Functions workflow only branches on [`Next`]; every rule that
//! produces it lives here so it can be tested without a state machine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A policy string that is not one of the allowed values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} policy {value:?}; expected one of: {allowed}")]
pub struct UnknownPolicy {
    pub kind: &'static str,
    pub value: String,
    pub allowed: &'static str,
}

/// What to do when a probe finds the queue empty: there is nothing to test
/// the consumer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmptyQueuePolicy {
    /// Close the circuit: nothing is waiting, so nothing can be lost.
    Close,
    /// Keep backing off until a real message arrives to probe with.
    Wait,
    /// Ask a separate health-check function instead.
    #[serde(rename = "health-check")]
    HealthCheckOnly,
}

impl EmptyQueuePolicy {
    const ALLOWED: &'static str = "close, wait, health-check";

    pub fn as_str(self) -> &'static str {
        match self {
            EmptyQueuePolicy::Close => "close",
            EmptyQueuePolicy::Wait => "wait",
            EmptyQueuePolicy::HealthCheckOnly => "health-check",
        }
    }
}

impl FromStr for EmptyQueuePolicy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "close" => Ok(EmptyQueuePolicy::Close),
            "wait" => Ok(EmptyQueuePolicy::Wait),
            "health-check" => Ok(EmptyQueuePolicy::HealthCheckOnly),
            _ => Err(UnknownPolicy {
                kind: "empty-queue",
                value: s.to_owned(),
                allowed: Self::ALLOWED,
            }),
        }
    }
}

impl fmt::Display for EmptyQueuePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do when probing is exhausted (attempt/time limits or the
/// retention guard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GiveUpPolicy {
    /// Leave the mapping disabled and alert a human.
    LeaveOpen,
    /// Re-enable the mapping so messages flow (and can reach a DLQ) rather
    /// than expire.
    Restore,
}

impl GiveUpPolicy {
    const ALLOWED: &'static str = "leave-open, restore";

    pub fn as_str(self) -> &'static str {
        match self {
            GiveUpPolicy::LeaveOpen => "leave-open",
            GiveUpPolicy::Restore => "restore",
        }
    }
}

impl FromStr for GiveUpPolicy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "leave-open" => Ok(GiveUpPolicy::LeaveOpen),
            "restore" => Ok(GiveUpPolicy::Restore),
            _ => Err(UnknownPolicy {
                kind: "give-up",
                value: s.to_owned(),
                allowed: Self::ALLOWED,
            }),
        }
    }
}

impl fmt::Display for GiveUpPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The workflow's next step; a Choice state compares these strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum Next {
    Close,
    Backoff,
    GiveUp,
    /// Spread the backlog with the rejitter before closing.
    Rejitter,
    /// The rejitter is still turning visible messages into delayed ones.
    WaitForBacklog,
    /// Someone else ended the circuit (enabled the consumer's mapping, deleted it, or took
    /// the circuit): release what the breaker still holds and stop.
    ClosedElsewhere,
    /// Held open by hand: wait again, no probe.
    Hold,
    /// The consumer is healthy: half-open the circuit with a slow start before closing.
    SlowStart,
    /// The slow start raised the mapping's cap: wait for the next step.
    Ramp,
    /// The consumer failed during the slow start: disable the mapping again and probe.
    Reopen,
}

/// With a slow start configured, every close goes through the half-open ramp first.
pub fn with_slow_start(next: Next, slow_start_seconds: u32) -> Next {
    match next {
        Next::Close if slow_start_seconds > 0 => Next::SlowStart,
        _ => next,
    }
}

/// A healthy probe with a rejitter configured spreads the backlog before closing; an empty
/// queue (or a passed health check on one) has no backlog to spread.
pub fn with_rejitter(next: Next, outcome: &ProbeOutcome, rejitter: bool) -> Next {
    match (next, outcome) {
        (Next::Close, ProbeOutcome::Healthy) if rejitter => Next::Rejitter,
        _ => next,
    }
}

/// What a probe round found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum ProbeOutcome {
    Healthy,
    Failed,
    /// No message to probe with.
    Empty,
    /// No visible message, but some are in flight or delayed: typically the consumer's own
    /// failed batches, hidden for the visibility timeout. Not empty: they come back.
    OnlyHidden,
    /// Queue empty, policy health-check-only, and the health check failed.
    HealthCheckFailed,
    /// Queue empty, policy health-check-only, and the health check passed.
    HealthCheckPassed,
}

/// Next step after a probe round (limits are checked separately with
/// [`exhausted`]).
///
/// For `Empty` under [`EmptyQueuePolicy::HealthCheckOnly`] this says
/// `Backoff`: a caller that can run the health check reports
/// `HealthCheckPassed`/`HealthCheckFailed` instead of `Empty`.
pub fn after_probe(outcome: &ProbeOutcome, empty: EmptyQueuePolicy) -> Next {
    match outcome {
        ProbeOutcome::Healthy | ProbeOutcome::HealthCheckPassed => Next::Close,
        ProbeOutcome::Failed | ProbeOutcome::HealthCheckFailed | ProbeOutcome::OnlyHidden => {
            Next::Backoff
        }
        ProbeOutcome::Empty => match empty {
            EmptyQueuePolicy::Close => Next::Close,
            EmptyQueuePolicy::Wait | EmptyQueuePolicy::HealthCheckOnly => Next::Backoff,
        },
    }
}

/// Optional bounds on how long the circuit may stay open. `None` means
/// unlimited (configured as 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limits {
    pub max_attempts: Option<u32>,
    pub max_open_seconds: Option<u32>,
}

/// Whether probing has hit a limit: at least `max_attempts` probes made, or
/// open for at least `max_open_seconds`. A clock that appears to run
/// backwards counts as zero time open.
pub fn exhausted(limits: &Limits, attempts_made: u32, opened_at_ms: u64, now_ms: u64) -> bool {
    let attempts_hit = limits.max_attempts.is_some_and(|max| attempts_made >= max);
    let time_hit = limits
        .max_open_seconds
        .is_some_and(|max| now_ms.saturating_sub(opened_at_ms) >= u64::from(max) * 1000);
    attempts_hit || time_hit
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EMPTY_POLICIES: [EmptyQueuePolicy; 3] = [
        EmptyQueuePolicy::Close,
        EmptyQueuePolicy::Wait,
        EmptyQueuePolicy::HealthCheckOnly,
    ];

    #[test]
    fn empty_queue_policy_parses() {
        assert_eq!("close".parse(), Ok(EmptyQueuePolicy::Close));
        assert_eq!("wait".parse(), Ok(EmptyQueuePolicy::Wait));
        assert_eq!(
            "health-check".parse(),
            Ok(EmptyQueuePolicy::HealthCheckOnly)
        );
        for bad in ["", "Close", "health-check-only", " wait"] {
            assert!(bad.parse::<EmptyQueuePolicy>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_policy_names_allowed_values() {
        let err = "nope".parse::<EmptyQueuePolicy>().expect_err("rejects");
        assert_eq!(
            err.to_string(),
            "unknown empty-queue policy \"nope\"; expected one of: close, wait, health-check"
        );
        let err = "open".parse::<GiveUpPolicy>().expect_err("rejects");
        assert_eq!(
            err.to_string(),
            "unknown give-up policy \"open\"; expected one of: leave-open, restore"
        );
    }

    #[test]
    fn give_up_policy_parses() {
        assert_eq!("leave-open".parse(), Ok(GiveUpPolicy::LeaveOpen));
        assert_eq!("restore".parse(), Ok(GiveUpPolicy::Restore));
        assert!("leave_open".parse::<GiveUpPolicy>().is_err());
    }

    #[test]
    fn serde_matches_from_str() {
        for p in EMPTY_POLICIES {
            let json = serde_json::to_string(&p).expect("serialises");
            assert_eq!(json, format!("\"{p}\""));
            assert_eq!(p.to_string().parse(), Ok(p));
            assert_eq!(
                serde_json::from_str::<EmptyQueuePolicy>(&json).ok(),
                Some(p)
            );
        }
        for p in [GiveUpPolicy::LeaveOpen, GiveUpPolicy::Restore] {
            let json = serde_json::to_string(&p).expect("serialises");
            assert_eq!(json, format!("\"{p}\""));
            assert_eq!(p.to_string().parse(), Ok(p));
            assert_eq!(serde_json::from_str::<GiveUpPolicy>(&json).ok(), Some(p));
        }
    }

    #[test]
    fn next_serialises_pascal_case() {
        let got: Vec<String> = [Next::Close, Next::Backoff, Next::GiveUp]
            .iter()
            .map(|n| serde_json::to_string(n).expect("serialises"))
            .collect();
        assert_eq!(got, ["\"Close\"", "\"Backoff\"", "\"GiveUp\""]);
        assert_eq!(
            serde_json::to_string(&ProbeOutcome::HealthCheckPassed)
                .ok()
                .as_deref(),
            Some("\"HealthCheckPassed\"")
        );
    }

    #[test]
    fn after_probe_table() {
        for p in EMPTY_POLICIES {
            assert_eq!(after_probe(&ProbeOutcome::Healthy, p), Next::Close);
            assert_eq!(
                after_probe(&ProbeOutcome::HealthCheckPassed, p),
                Next::Close
            );
            assert_eq!(after_probe(&ProbeOutcome::Failed, p), Next::Backoff);
            assert_eq!(
                after_probe(&ProbeOutcome::HealthCheckFailed, p),
                Next::Backoff
            );
        }
        assert_eq!(
            after_probe(&ProbeOutcome::Empty, EmptyQueuePolicy::Close),
            Next::Close
        );
        assert_eq!(
            after_probe(&ProbeOutcome::Empty, EmptyQueuePolicy::Wait),
            Next::Backoff
        );
        assert_eq!(
            after_probe(&ProbeOutcome::Empty, EmptyQueuePolicy::HealthCheckOnly),
            Next::Backoff
        );
    }

    #[test]
    fn unlimited_is_never_exhausted() {
        assert!(!exhausted(&Limits::default(), u32::MAX, 0, u64::MAX));
    }

    #[test]
    fn attempts_limit() {
        let l = Limits {
            max_attempts: Some(3),
            max_open_seconds: None,
        };
        assert!(!exhausted(&l, 2, 0, 0));
        assert!(exhausted(&l, 3, 0, 0));
        assert!(exhausted(&l, 4, 0, 0));
    }

    #[test]
    fn open_time_limit() {
        let l = Limits {
            max_attempts: None,
            max_open_seconds: Some(60),
        };
        assert!(!exhausted(&l, 100, 1_000, 60_999));
        assert!(exhausted(&l, 0, 1_000, 61_000));
        // Clock skew backwards is not a reason to give up.
        assert!(!exhausted(&l, 0, 10_000, 5_000));
    }

    #[test]
    fn either_limit_suffices() {
        let l = Limits {
            max_attempts: Some(5),
            max_open_seconds: Some(60),
        };
        assert!(exhausted(&l, 5, 0, 0));
        assert!(exhausted(&l, 0, 0, 60_000));
        assert!(!exhausted(&l, 4, 0, 59_999));
    }

    proptest! {
        #[test]
        fn exhausted_is_monotone(
            max_attempts in proptest::option::of(1u32..1000),
            max_open_seconds in proptest::option::of(1u32..100_000),
            attempts in 0u32..2000,
            opened in 0u64..1 << 40,
            elapsed in 0u64..1 << 30,
        ) {
            let l = Limits { max_attempts, max_open_seconds };
            let now = opened + elapsed;
            if exhausted(&l, attempts, opened, now) {
                prop_assert!(exhausted(&l, attempts + 1, opened, now));
                prop_assert!(exhausted(&l, attempts, opened, now + 1));
            }
        }
    }

    #[test]
    fn only_a_healthy_probe_goes_through_the_rejitter() {
        use super::with_rejitter;
        assert_eq!(
            with_rejitter(Next::Close, &ProbeOutcome::Healthy, true),
            Next::Rejitter
        );
        assert_eq!(
            with_rejitter(Next::Close, &ProbeOutcome::Healthy, false),
            Next::Close
        );
        assert_eq!(
            with_rejitter(Next::Close, &ProbeOutcome::Empty, true),
            Next::Close
        );
        assert_eq!(
            with_rejitter(Next::Close, &ProbeOutcome::HealthCheckPassed, true),
            Next::Close
        );
        assert_eq!(
            with_rejitter(Next::Backoff, &ProbeOutcome::Failed, true),
            Next::Backoff
        );
    }

    #[test]
    fn with_a_slow_start_every_close_goes_half_open_first() {
        use super::with_slow_start;
        assert_eq!(with_slow_start(Next::Close, 60), Next::SlowStart);
        assert_eq!(with_slow_start(Next::Close, 0), Next::Close);
        assert_eq!(with_slow_start(Next::Rejitter, 60), Next::Rejitter);
        assert_eq!(with_slow_start(Next::Backoff, 60), Next::Backoff);
    }

    #[test]
    fn hidden_messages_are_waited_for_whatever_the_empty_queue_policy() {
        for policy in [
            EmptyQueuePolicy::Close,
            EmptyQueuePolicy::Wait,
            EmptyQueuePolicy::HealthCheckOnly,
        ] {
            assert_eq!(
                after_probe(&ProbeOutcome::OnlyHidden, policy),
                Next::Backoff
            );
        }
    }
}
