//! The xtask crate's integration tests, one binary: the checks of the templates, the
//! workflow and IAM, and the local-stack tests (`#[ignore]`d: `cargo xtask test` runs them,
//! each in its own process under cargo-nextest). One binary links the AWS SDK once, not once
//! a test file: minutes of linking and gigabytes of `target/` on a fresh clone.

mod attachment;
mod breaker;
mod cdk;
mod company_account;
mod company_stack;
mod console;
mod e2e;
mod emulator_gaps;
mod example_stack;
mod fifo;
mod fleet;
mod iam;
mod never_strand;
mod refusals;
mod rejitter;
mod retrip;
mod signals;
mod slow_start;
mod support;
mod templates;
mod workflow;
