//! `cargo xtask local`, `send` and `outage`: the local stack (MiniStack on 127.0.0.1 with the
//! example stack and the breaker deployed), its emulator gap bridge, and what a developer does
//! to it by hand.

use anyhow::{Context, Result};
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::emulator::Emulator;
use crate::{aws, consumer, emulator_gaps, paths, stack, status, traffic};

/// A runtime for a task's async part.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Runtime::new()?)
}

/// Starts (or reuses) the emulator and its gap bridge, and deploys the example stack and the
/// breaker with their templates' defaults.
pub fn up(port: u16) -> Result<Emulator> {
    let (tools, emulator) = stack::emulator_on(port)?;
    bridge_process(&emulator)?;
    runtime()?.block_on(stack::deploy_example_and_breaker(
        &tools,
        &emulator,
        &Vec::new(),
        &Vec::new(),
    ))?;
    eprintln!(
        "==> local stack up at {} (stop it with: cargo xtask local down --port {port})",
        emulator.endpoint()
    );
    Ok(emulator)
}

fn bridge_pid_file(port: u16) -> std::path::PathBuf {
    paths::local().join(format!("bridge-{port}.pid"))
}

/// Starts `cargo xtask local bridge` detached, unless one already runs for this emulator.
pub fn bridge_process(emulator: &Emulator) -> Result<()> {
    let pid_file = bridge_pid_file(emulator.port);
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        if std::path::Path::new(&format!("/proc/{}", pid.trim())).exists() {
            return Ok(());
        }
    }
    let log = std::fs::File::create(paths::local().join(format!("bridge-{}.log", emulator.port)))?;
    let child = Command::new(std::env::current_exe()?)
        .args(["local", "bridge", "--port", &emulator.port.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the emulator gap bridge")?;
    std::fs::write(pid_file, child.id().to_string())?;
    eprintln!("==> emulator gap bridge running (pid {})", child.id());
    Ok(())
}

/// The local stack from this checkout on `port`, or an error saying how to start it.
pub fn running(port: u16) -> Result<Emulator> {
    Emulator::find(port).with_context(|| {
        format!("no local stack from this checkout runs on port {port}; start it with: cargo xtask local up --port {port}")
    })
}

/// Stops the gap bridge and the emulator started by `up` (by their recorded pids).
pub fn down(port: u16) -> Result<()> {
    if let Ok(pid) = std::fs::read_to_string(bridge_pid_file(port)) {
        let _ = Command::new("kill").arg(pid.trim()).status();
        let _ = std::fs::remove_file(bridge_pid_file(port));
    }
    match Emulator::find(port) {
        Some(emulator) => {
            emulator.stop();
            println!("stopped ministack (pid {}) on port {port}", emulator.pid);
        }
        None => println!("no local stack from this checkout runs on port {port}"),
    }
    Ok(())
}

async fn send_to(emulator: &Emulator, count: usize) -> Result<()> {
    let config = aws::config(emulator).await;
    let outputs = aws::stack_outputs(&config, stack::EXAMPLE_STACK).await?;
    let queue = outputs
        .get("QueueUrl")
        .context("example stack has no QueueUrl output")?;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let ids = traffic::send(&sqs, queue, "example", count).await?;
    println!("sent {} messages to {queue}", ids.len());
    Ok(())
}

async fn outage_on(emulator: &Emulator, on: bool) -> Result<()> {
    let config = aws::config(emulator).await;
    let outputs = aws::stack_outputs(&config, stack::EXAMPLE_STACK).await?;
    let function = outputs
        .get("ConsumerFunctionName")
        .context("example stack has no ConsumerFunctionName output")?;
    consumer::set_should_error(&aws_sdk_lambda::Client::new(&config), function, on).await?;
    println!("SHOULD_ERROR={on} on {function}");
    Ok(())
}

/// Prints the deployed stacks, event source mappings and queue depths.
pub fn status(port: u16) -> Result<()> {
    runtime()?.block_on(status::print(&running(port)?))
}

/// Runs the emulator gap bridges in the foreground.
pub fn bridge(port: u16) -> Result<()> {
    emulator_gaps::Bridges::start(&running(port)?)?.wait();
    Ok(())
}

/// Sends `count` example messages to the example queue.
pub fn send(port: u16, count: usize) -> Result<()> {
    runtime()?.block_on(send_to(&running(port)?, count))
}

/// Switches the example consumer's simulated outage on or off.
pub fn outage(port: u16, on: bool) -> Result<()> {
    runtime()?.block_on(outage_on(&running(port)?, on))
}
