//! Developer tooling for sqs-circuit-breaker: the local AWS stack (MiniStack + SAM), tests
//! and demos. Nothing here ships to AWS.

pub mod asl;
pub mod aws;
pub mod bench;
pub mod breaker;
pub mod cdk;
pub mod checks;
pub mod console;
pub mod consumer;
pub mod demo;
pub mod docs;
pub mod emulator;
pub mod emulator_gaps;
pub mod fleet;
pub mod local;
pub mod logs;
pub mod paths;
pub mod sam;
pub mod shapes;
pub mod stack;
pub mod status;
pub mod traffic;
pub mod wait;

pub use xtask_launcher::{run, tools, LAMBDAS};
