//! The controller's pure core: plain types and pure functions.
//!
//! Nothing in here talks to AWS, reads the clock or draws random numbers on
//! its own. Time comes in as epoch milliseconds and randomness as a number in
//! `[0, 1)`, so every decision the circuit breaker makes can be tested
//! exhaustively without mocks.

pub mod alarm_event;
pub mod attachment;
pub mod backlog;
pub mod backoff;
pub mod composite;
pub mod config;
pub mod deploy_check;
pub mod deployment;
pub mod hang;
pub mod history;
pub mod old_errors;
pub mod operator;
pub mod policy;
pub mod queue_arn;
pub mod rearm;
pub mod receives;
pub mod registration;
pub mod retention;
pub mod signal;
pub mod slow_start;
pub mod verdict;

pub use alarm_event::{
    alarm_transition, epoch_ms, is_fresh, AlarmTransition, InvalidEvent, OwnAlarm,
};
pub use backlog::after_backlog_check;
pub use backoff::{Backoff, MAX_VISIBILITY_SECONDS};
pub use config::{Config, ConfigError};
pub use policy::{
    after_probe, exhausted, with_rejitter, with_slow_start, EmptyQueuePolicy, GiveUpPolicy, Limits,
    Next, ProbeOutcome, UnknownPolicy,
};
pub use queue_arn::{QueueArn, QueueArnError};
pub use retention::{must_give_up, oldest_sent_ms, retention_deadline_ms};
pub use verdict::{judge, ProbeInvocation, Verdict};
