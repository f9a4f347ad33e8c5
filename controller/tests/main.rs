//! The controller crate's integration tests, one binary whose modules are the files of
//! tests/: one binary links the AWS SDK once, not once a test file.

mod alerting;
mod aws_samples;
mod ending;
mod executions;
mod fleet;
mod hold;
mod open;
mod probe;
mod recovery;
mod registration;
mod rejitter;
mod requests;
mod slow_start;
mod stopped_while_opening;
mod support;
