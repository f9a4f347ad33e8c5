//! `sqs-circuit-breaker`: the on-call engineer's command for a deployed breaker. It finds the
//! breaker by its stack name and acts through the controller library, as the workflow does.

use clap::{Parser, Subcommand};
use controller::core::operator::{OperatorOpen, Phase};
use sqs_circuit_breaker::watch::Watch;
use sqs_circuit_breaker::{actions, fleet, history, locate, render, status};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// AWS profile (default: the standard credential chain).
    #[arg(long, global = true)]
    profile: Option<String>,
    /// AWS region (default: the profile's or AWS_REGION).
    #[arg(long, global = true)]
    region: Option<String>,
    /// Endpoint for every AWS call, e.g. a local emulator (default: AWS_ENDPOINT_URL, or AWS).
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Is each consumer's circuit open, since when, why, and what happens next. Exit status:
    /// 0 all closed, 3 any open (probing, held or given up), 1 error.
    Status {
        #[arg(long)]
        stack: String,
        /// A JSON array, one object per consumer, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Prints the circuit's changes as they happen (state, probes, mapping, alarm, queue
    /// depth) until Ctrl-C.
    Watch {
        #[arg(long)]
        stack: String,
        /// The consumer (an attachment's id, or `built-in`); needed when the deployment guards
        /// several.
        #[arg(long)]
        consumer: Option<String>,
        /// Seconds between readings.
        #[arg(long, default_value_t = 2)]
        interval: u64,
    },
    /// Opens the circuit now, through the workflow: the mapping is disabled and probing
    /// starts; with --hold it stays open, without probing, until `close`.
    Open {
        #[arg(long)]
        stack: String,
        /// The consumer (an attachment's id, or `built-in`); needed when the deployment guards
        /// several.
        #[arg(long)]
        consumer: Option<String>,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        hold: bool,
    },
    /// Closes the circuit now: stops the owning execution, switches the rejitter off, enables
    /// the consumer, releases the circuit, re-arms the alarm. Closing a closed circuit changes
    /// nothing.
    Close {
        #[arg(long)]
        stack: String,
        /// The consumer (an attachment's id, or `built-in`); needed when the deployment guards
        /// several.
        #[arg(long)]
        consumer: Option<String>,
        #[arg(long, default_value = "closed with the operator command")]
        reason: String,
    },
    /// Past circuits: opened, ended, probes, how each ended.
    History {
        #[arg(long)]
        stack: String,
        /// The consumer (an attachment's id, or `built-in`); needed when the deployment guards
        /// several.
        #[arg(long)]
        consumer: Option<String>,
        /// How far back, e.g. 30m, 24h, 7d.
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        since: Duration,
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    fn stack(&self) -> &str {
        match self {
            Command::Status { stack, .. }
            | Command::Watch { stack, .. }
            | Command::Open { stack, .. }
            | Command::Close { stack, .. }
            | Command::History { stack, .. } => stack,
        }
    }

    /// The consumer asked for (`status` shows them all).
    fn consumer(&self) -> Option<&str> {
        match self {
            Command::Status { .. } => None,
            Command::Watch { consumer, .. }
            | Command::Open { consumer, .. }
            | Command::Close { consumer, .. }
            | Command::History { consumer, .. } => consumer.as_deref(),
        }
    }
}

/// One line on stderr, and a non-zero exit status.
fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("sqs-circuit-breaker: {message}");
    ExitCode::FAILURE
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut loader = controller::sdk::defaults();
    if let Some(profile) = &cli.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = &cli.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(endpoint) = &cli.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let sdk = loader.load().await;
    let breaker = match locate::breaker(&sdk, cli.command.stack(), &cli.endpoint_url).await {
        Ok(breaker) => breaker,
        Err(e) => return fail(e),
    };
    match run(&breaker, cli.command).await {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

async fn run(
    breaker: &locate::Breaker,
    command: Command,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let sm = &breaker.state_machine_arn;
    let wanted = command.consumer().map(str::to_string);
    let consumer = || fleet::consumer(&breaker.ctx, wanted.as_deref());
    match command {
        Command::Status { json, .. } => {
            let ctx = &breaker.ctx;
            let rows = status::fleet(ctx).await?;
            // A deployment with one consumer fails as a single-consumer stack always has.
            if let [status::Row {
                error: Some(error), ..
            }] = rows.as_slice()
            {
                return Err(error.clone().into());
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", render::fleet(&rows, ctx.now_ms()));
            }
            Ok(ExitCode::from(status::exit_code(&rows) as u8))
        }
        Command::Watch { interval, .. } => {
            let consumer = consumer().await?;
            let ctx = &consumer.ctx;
            // The demo's live view: everything that changes, as it changes.
            let mut watch = Watch::from_now(ctx, sm)
                .await?
                .only(consumer.execution_filter());
            loop {
                let (_, changes) = watch.tick(ctx, sm).await?;
                for change in changes {
                    println!("{} {change}", render::time(ctx.now_ms()));
                }
                tokio::time::sleep(Duration::from_secs(interval.max(1))).await;
            }
        }
        Command::Open { reason, hold, .. } => {
            let consumer = consumer().await?;
            let ctx = &consumer.ctx;
            let request = OperatorOpen::new(&reason, hold)?;
            let execution = actions::open(ctx, sm, &request, consumer.attachment_id()).await?;
            println!("started execution {execution}");
            // Until the execution holds the circuit, or ends without it.
            for _ in 0..120 {
                let status = status::status(ctx).await?;
                if status.phase != Phase::Closed && status.owner.as_deref() == Some(&execution) {
                    print!("{}", render::status(&status, ctx.now_ms()));
                    return Ok(ExitCode::SUCCESS);
                }
                let ended =
                    !controller::adapters::execution::is_running(&ctx.clients.sfn, &execution)
                        .await?;
                if ended {
                    print!("{}", render::status(&status, ctx.now_ms()));
                    return Err(format!(
                        "the execution ended without opening the circuit (another execution \
                         holds it, or the mapping is not Enabled): see {}",
                        status::console_url(&ctx.config.queue()?.region, &execution)
                    )
                    .into());
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(format!("the circuit did not open within a minute; see {execution}").into())
        }
        Command::Close { reason, .. } => {
            let consumer = consumer().await?;
            let ctx = &consumer.ctx;
            let report = actions::close(ctx, &reason).await?;
            for action in &report.actions {
                println!("{action}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::History { since, json, .. } => {
            let consumer = consumer().await?;
            let ctx = &consumer.ctx;
            let since_ms = ctx.now_ms().saturating_sub(since.as_millis() as u64);
            let past = history::history(ctx, sm, since_ms, consumer.execution_filter()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&past)?);
            } else {
                print!("{}", render::history(&past));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `sqs-circuit-breaker` command the README and docs/ show still parses.
    #[test]
    fn the_documented_commands_parse() {
        xtask::docs::assert_documented_commands_parse::<Cli>("sqs-circuit-breaker");
    }
}
