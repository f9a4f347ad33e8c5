//! `cargo xtask demo`: the command around the scenario: the local stack, the summary and
//! the verdict.

use anyhow::Result;

use super::Options;
use crate::emulator::Emulator;
use crate::{local, stack};

/// The demo command's flags beside the scenario's options.
#[derive(Debug)]
pub struct Flags {
    pub port: u16,
    pub keep: bool,
    pub options: Options,
}

/// Starts (or reuses) the local stack, runs the scenario, prints the summary, stops a stack
/// it started unless asked to keep it; fails if a message was lost or the circuit did
/// not close.
pub fn command(flags: Flags) -> Result<()> {
    let port = flags.port;
    let started_here = Emulator::find(port).is_none();
    let (tools, emulator) = stack::emulator_on(port)?;
    local::bridge_process(&emulator)?;
    let outcome = local::runtime()?.block_on(super::run(&tools, &emulator, &flags.options));
    // The summary first: stopping the stack takes a few seconds more.
    if let Ok(report) = &outcome {
        println!("{}", report.summary());
        println!(
            "console's last picture: {}\nexecution histories: {}",
            flags.options.out_dir.join("console.html").display(),
            flags.options.out_dir.join("executions.json").display()
        );
    }
    if flags.keep || !started_here {
        println!("the local stack stays up; stop it with: cargo xtask local down --port {port}");
    } else {
        local::down(port)?;
    }
    let report = outcome?;
    anyhow::ensure!(report.lost == 0, "{} messages were lost", report.lost);
    anyhow::ensure!(
        report.owner().is_some_and(|e| e.visited("CloseCircuit")),
        "the circuit did not close"
    );
    Ok(())
}
