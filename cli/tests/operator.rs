//! The operator command against a deployed breaker on a local emulator: `status` in each
//! state (and `--json`), `open --hold` then `close`, `close` while an execution probes (the
//! consumer back, the circuit released, no message lost), `close` twice, `close` after a
//! `leave-open` give-up, `history`, `watch`,
//! and one clear line for a missing stack, a stack that is not a breaker, and an endpoint
//! nobody answers; then a fleet: two consumers attached, `status` of all three, `open`,
//! `close` and `history` of one with `--consumer`.

use anyhow::{ensure, Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use xtask::stack::{fast_breaker, fast_example, Deployment, BREAKER_STACK, EXAMPLE_STACK};
use xtask::wait::eventually;
use xtask::{breaker, traffic};

fn deploy() -> Result<(tokio::runtime::Runtime, Deployment)> {
    let example = fast_example();
    let mut breaker = fast_breaker();
    breaker.extend([
        // Probes find an empty queue until messages come: keep the circuit open.
        ("EmptyQueuePolicy", "wait".into()),
        // Only this test's commands open circuits.
        ("AlarmThreshold", "1000000".into()),
        ("MaxCircuitsPerHour", "0".into()),
    ]);
    Deployment::start(&example, &breaker)
}

/// Runs the command against `endpoint` with the emulator's dummy credentials.
fn command(endpoint: &str, args: &[&str]) -> Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_sqs-circuit-breaker"))
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", xtask::sam::REGION)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .with_context(|| format!("running sqs-circuit-breaker {args:?}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed (exit status `code`); returns its stdout.
fn run(endpoint: &str, args: &[&str], code: i32) -> Result<String> {
    let out = command(endpoint, args)?;
    ensure!(
        out.status.code() == Some(code),
        "{args:?} exited {:?}, expected {code}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    Ok(text(&out.stdout))
}

/// A command that must fail with one line on stderr containing `expected`.
fn refused(endpoint: &str, args: &[&str], expected: &str) -> Result<()> {
    let out = command(endpoint, args)?;
    let stderr = text(&out.stderr);
    ensure!(
        !out.status.success() && stderr.lines().count() == 1 && stderr.contains(expected),
        "{args:?}: expected one line with {expected:?}, got exit {:?}, stderr {stderr:?}",
        out.status.code()
    );
    Ok(())
}

/// `status --json` (one object per consumer), checking that the exit status says all
/// closed (0) or any open (3).
fn fleet_status(endpoint: &str) -> Result<Vec<Value>> {
    let out = command(endpoint, &["status", "--stack", BREAKER_STACK, "--json"])?;
    let stdout = text(&out.stdout);
    let rows: Vec<Value> = serde_json::from_str(&stdout).with_context(|| {
        format!(
            "status --json printed {stdout}, stderr {}",
            text(&out.stderr)
        )
    })?;
    let expected = if rows.iter().all(|r| r["phase"] == "CLOSED") {
        0
    } else {
        3
    };
    ensure!(
        out.status.code() == Some(expected),
        "status exited {:?} for {rows:?}",
        out.status.code()
    );
    Ok(rows)
}

/// The built-in consumer's row of `status --json`.
fn status(endpoint: &str) -> Result<Value> {
    fleet_status(endpoint)?
        .into_iter()
        .find(|r| r["id"] == "built-in")
        .context("status --json has no built-in consumer")
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn the_operator_command_shows_opens_holds_and_closes_the_circuit() -> Result<()> {
    let (runtime, d) = deploy()?;
    let endpoint = d.local.emulator.endpoint();
    let e = endpoint.as_str();

    // Bad input: one clear line each, nothing changed.
    refused(
        e,
        &["status", "--stack", "no-such-stack"],
        "stack no-such-stack does not exist",
    )?;
    refused(
        e,
        &["close", "--stack", EXAMPLE_STACK],
        "is not an sqs-circuit-breaker stack",
    )?;
    let port = xtask::emulator::free_port()?;
    refused(
        &format!("http://127.0.0.1:{port}"),
        &["status", "--stack", BREAKER_STACK],
        "cannot reach AWS",
    )?;

    // Closed: exit 0, the consumer's mapping Enabled.
    let closed = status(e)?;
    ensure!(
        closed["phase"] == "CLOSED" && closed["mapping_state"] == "Enabled",
        "{closed}"
    );
    let human = run(e, &["status", "--stack", BREAKER_STACK], 0)?;
    ensure!(human.starts_with("circuit      CLOSED"), "{human}");

    runtime.block_on(async {
        // Held open: the mapping off, no probes, until close.
        let out = run(
            e,
            &[
                "open",
                "--stack",
                BREAKER_STACK,
                "--reason",
                "database maintenance",
                "--hold",
            ],
            0,
        )?;
        ensure!(out.contains("started execution"), "{out}");
        let held = eventually(
            "the circuit to be held open",
            Duration::from_secs(60),
            || async {
                let s = status(e)?;
                Ok((s["phase"] == "HELD_OPEN").then_some(s))
            },
        )
        .await?;
        ensure!(
            held["mapping_state"] == "Disabled"
                && held["reason"] == "opened by hand: database maintenance"
                && held["current_state"] == "HoldOpen",
            "{held}"
        );
        let holder = held["owner"].as_str().context("no owner")?.to_string();

        let out = run(
            e,
            &["close", "--stack", BREAKER_STACK, "--reason", "done"],
            0,
        )?;
        ensure!(
            out.contains(&format!("stopped execution {holder}"))
                && out.contains("enabled the consumer's mapping")
                && out.contains("marked the circuit CLOSED"),
            "{out}"
        );
        let after = status(e)?;
        ensure!(
            after["phase"] == "CLOSED"
                && after["mapping_state"] == "Enabled"
                && after["reason"] == "closed by an operator: done",
            "{after}"
        );
        let alarm = d.alarm().await?;
        ensure!(alarm.value == "OK", "the alarm is re-armed: {alarm:?}");

        // Twice: nothing to do, and it says so.
        let out = run(e, &["close", "--stack", BREAKER_STACK], 0)?;
        ensure!(out.contains("already closed; nothing changed"), "{out}");

        // Close while an execution probes: the consumer back, nothing lost.
        d.outage(true).await?;
        let sent = traffic::send(&d.sqs, d.queue(), "operator", 20).await?;
        run(
            e,
            &[
                "open",
                "--stack",
                BREAKER_STACK,
                "--reason",
                "downstream down",
            ],
            0,
        )?;
        let probing = eventually("a failed probe", Duration::from_secs(90), || async {
            let s = status(e)?;
            let failed = s["probes"].as_u64().unwrap_or(0) >= 1 && s["last_probe"] == "Failed";
            Ok((s["phase"] == "OPEN" && failed).then_some(s))
        })
        .await?;
        let prober = probing["owner"].as_str().context("no owner")?.to_string();
        let out = run(e, &["close", "--stack", BREAKER_STACK], 0)?;
        ensure!(
            out.contains(&format!("stopped execution {prober}")),
            "{out}"
        );
        let after = status(e)?;
        ensure!(
            after["phase"] == "CLOSED" && after["mapping_state"] == "Enabled",
            "{after}"
        );
        let ended = breaker::status(&d.sfn, &prober).await?;
        ensure!(
            ended == aws_sdk_sfn::types::ExecutionStatus::Aborted,
            "{ended:?}"
        );
        d.outage(false).await?;
        d.every_message_processed(&sent).await?;
        // The recovery of the stopped execution found the circuit closed: still CLOSED, by
        // the operator.
        let circuit = d.circuit().await?.context("no circuit item")?;
        ensure!(circuit.state == "CLOSED", "{circuit:?}");

        // Given up with leave-open: the consumer stays off until an operator closes it. (The
        // controller's environment is what the GiveUpPolicy and MaxProbeAttempts parameters
        // set.)
        let controller = d.breaker["ControllerFunctionName"].as_str();
        xtask::consumer::configure(
            &d.lambda,
            controller,
            &[
                ("GIVE_UP_POLICY", "leave-open".into()),
                ("MAX_PROBE_ATTEMPTS", "2".into()),
            ],
            None,
        )
        .await?;
        d.outage(true).await?;
        run(
            e,
            &["open", "--stack", BREAKER_STACK, "--reason", "give up"],
            0,
        )?;
        let gave_up = eventually("the give-up", Duration::from_secs(90), || async {
            let s = status(e)?;
            Ok((s["phase"] == "GAVE_UP").then_some(s))
        })
        .await?;
        ensure!(gave_up["mapping_state"] == "Disabled", "{gave_up}");
        let quitter = gave_up["owner"].as_str().context("no owner")?.to_string();
        let out = run(e, &["close", "--stack", BREAKER_STACK], 0)?;
        ensure!(
            !out.contains("stopped execution") && out.contains("enabled the consumer's mapping"),
            "{out}"
        );
        let after = status(e)?;
        ensure!(
            after["phase"] == "CLOSED" && after["mapping_state"] == "Enabled",
            "{after}"
        );
        d.outage(false).await?;

        // History: the three circuits, newest first, each ended as it was.
        let out = run(
            e,
            &[
                "history",
                "--stack",
                BREAKER_STACK,
                "--since",
                "1h",
                "--json",
            ],
            0,
        )?;
        let past: Value = serde_json::from_str(&out)?;
        let executions: Vec<&str> = past
            .as_array()
            .context("history --json is an array")?
            .iter()
            .filter_map(|c| c["execution"].as_str())
            .collect();
        ensure!(
            executions == [quitter.as_str(), prober.as_str(), holder.as_str()],
            "{past}"
        );
        let endings: Vec<&Value> = past
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| &c["ending"])
            .collect();
        ensure!(endings == ["gave_up", "stopped", "stopped"], "{past}");
        ensure!(
            past[0]["probes"] == 2 && past[1]["probes"].as_u64() >= Some(1),
            "{past}"
        );
        let table = run(e, &["history", "--stack", BREAKER_STACK], 0)?;
        ensure!(table.lines().count() == 4, "{table}");
        anyhow::Ok(())
    })?;

    // Watch: the live view prints the circuit's state, then keeps going until stopped.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_sqs-circuit-breaker"))
        .args(["watch", "--stack", BREAKER_STACK, "--interval", "1"])
        .env("AWS_ENDPOINT_URL", e)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", xtask::sam::REGION)
        .stdout(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_secs(5));
    ensure!(watch.try_wait()?.is_none(), "watch must run until stopped");
    watch.kill()?;
    let out = watch.wait_with_output()?;
    let printed = text(&out.stdout);
    ensure!(
        printed.contains("circuit CLOSED") && printed.contains("mapping Enabled"),
        "{printed}"
    );

    runtime.block_on(a_fleet(&d, e))
}

/// Two consumers attached next to the built-in one (their items written to the attachments
/// table, as the registration writes them; each its own queue read by the example consumer,
/// so its own mapping and circuit): `status` lists all three, `open --consumer` opens exactly
/// that one, a command without `--consumer` names the consumers, `close --consumer` closes
/// it, and `history --consumer` shows only that consumer's circuits.
async fn a_fleet(d: &Deployment, e: &str) -> Result<()> {
    let table = &d.breaker["AttachmentsTableName"];
    for id in ["orders-b", "orders-c"] {
        let url = d
            .sqs
            .create_queue()
            .queue_name(id)
            .send()
            .await?
            .queue_url()
            .context("no queue URL")?
            .to_string();
        let queue_arn = d
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .context("no queue ARN")?
            .clone();
        d.lambda
            .create_event_source_mapping()
            .function_name(d.function())
            .event_source_arn(&queue_arn)
            .send()
            .await?;
        // The deployment's own alarm: the operator's open and close need one to read and
        // re-arm, and which alarm it is does not matter to them.
        let settings = serde_json::json!({
            "Id": id,
            "ConsumerFunctionName": d.function(),
            "QueueArn": queue_arn,
            "AlarmName": d.breaker["AlarmName"],
        });
        d.dynamodb
            .put_item()
            .table_name(table)
            .item("id", AttributeValue::S(id.into()))
            .item("settings", AttributeValue::S(settings.to_string()))
            .send()
            .await?;
    }
    let ids = |rows: &[Value]| -> Vec<String> {
        rows.iter()
            .map(|r| r["id"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let rows = eventually(
        "both new mappings Enabled",
        Duration::from_secs(60),
        || async {
            let rows = fleet_status(e)?;
            Ok(rows
                .iter()
                .all(|r| r["mapping_state"] == "Enabled")
                .then_some(rows))
        },
    )
    .await?;
    ensure!(
        ids(&rows) == ["built-in", "orders-b", "orders-c"],
        "{rows:?}"
    );

    refused(
        e,
        &["close", "--stack", BREAKER_STACK],
        "say which with --consumer (built-in, orders-b, orders-c)",
    )?;
    let args = |more: &[&'static str]| -> Vec<&'static str> {
        let mut args = vec!["--stack", BREAKER_STACK, "--consumer", "orders-b"];
        args.extend(more);
        args
    };
    let mut open = vec!["open"];
    open.extend(args(&["--reason", "orders-b maintenance", "--hold"]));
    run(e, &open, 0)?;
    let open_ones = eventually(
        "orders-b to be held open",
        Duration::from_secs(60),
        || async {
            let rows = fleet_status(e)?;
            let open: Vec<Value> = rows
                .into_iter()
                .filter(|r| r["phase"] != "CLOSED")
                .collect();
            Ok(
                (!open.is_empty() && open.iter().all(|r| r["phase"] == "HELD_OPEN"))
                    .then_some(open),
            )
        },
    )
    .await?;
    ensure!(
        ids(&open_ones) == ["orders-b"] && open_ones[0]["mapping_state"] == "Disabled",
        "exactly orders-b is open: {open_ones:?}"
    );
    let human = run(e, &["status", "--stack", BREAKER_STACK], 3)?;
    ensure!(
        human.contains("consumer     orders-b (function") && human.contains("HELD_OPEN"),
        "{human}"
    );

    let mut close = vec!["close"];
    close.extend(args(&["--reason", "done"]));
    let out = run(e, &close, 0)?;
    ensure!(
        out.contains("stopped execution") && out.contains("marked the circuit CLOSED"),
        "{out}"
    );
    let rows = fleet_status(e)?;
    ensure!(
        rows.iter()
            .all(|r| r["phase"] == "CLOSED" && r["mapping_state"] == "Enabled"),
        "{rows:?}"
    );

    // The history of orders-b is its one circuit; the built-in consumer's are its three.
    let mut history = vec!["history"];
    history.extend(args(&["--since", "1h", "--json"]));
    let past: Value = serde_json::from_str(&run(e, &history, 0)?)?;
    ensure!(
        past.as_array().map(Vec::len) == Some(1) && past[0]["ending"] == "stopped",
        "{past}"
    );
    let built_in: Value = serde_json::from_str(&run(
        e,
        &[
            "history",
            "--stack",
            BREAKER_STACK,
            "--consumer",
            "built-in",
            "--since",
            "1h",
            "--json",
        ],
        0,
    )?)?;
    ensure!(built_in.as_array().map(Vec::len) == Some(3), "{built_in}");
    Ok(())
}
