//! The part of xtask that `cargo xtask` needs before xtask itself is compiled: the
//! checkout's folders, logged commands and the pinned toolchain's install. xtask re-exports
//! all three (`xtask::paths`, `xtask::run`, `xtask::tools`).

pub mod paths;
pub mod run;
pub mod tools;

/// The Lambdas' packages, each with one binary of its name: what the Makefile's host build
/// (`make lambdas`) makes for the emulator.
pub const LAMBDAS: [&str; 3] = ["controller", "rejitter", "example-consumer"];
