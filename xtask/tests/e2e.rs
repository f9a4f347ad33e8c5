//! The main job end to end: the outage demo's scenario, with short timings, on a local stack
//! of its own. The alarm trips through the emulator-gap bridge (evaluated alarm, delivered
//! "CloudWatch Alarm State Change" event), exactly as `cargo xtask demo` runs it.

use std::time::Duration;
use xtask::{demo, stack::TestStack};

#[test]
#[ignore = "needs the local stack (MiniStack + sam); `cargo xtask test` runs it"]
fn an_outage_opens_the_circuit_probes_spreads_the_backlog_and_closes_without_loss() {
    let local = TestStack::start().expect("local stack");
    let options = demo::Options {
        warmup: Duration::from_secs(5),
        // Long enough for two failed probes even when the alarm takes two periods to trip
        // and a slow machine takes seconds to open the circuit.
        outage: Duration::from_secs(40),
        failed_probes: 2,
        rate: 4,
        alarm_period_s: 10,
        backoff_base_s: 1,
        backoff_cap_s: 4,
        // Longer than the rejitter phase (two 5 s backlog checks, about 12 s): a message
        // delayed less comes back to the rejitter while it still polls and is re-sent with
        // 60 s more (rejitter::marker::RESEND_DELAY_SECONDS), which the drain then waits out.
        min_delay_s: 20,
        max_delay_s: 25,
        slow_start_s: 9,
        timeout: Duration::from_secs(480),
        out_dir: xtask::paths::local().join(format!("e2e-{}", local.emulator.port)),
        console_port: 0,
        narrate: true,
    };
    let report = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(demo::run(&local.tools, &local.emulator, &options))
        .expect("the scenario ran to its end");
    println!("{}", report.summary());

    // Opened: one execution took the circuit and disabled the consumer's mapping.
    let owner = report.owner().expect("an execution opened the circuit");
    assert_eq!(owner.status, "SUCCEEDED", "{:#?}", owner.steps);
    assert!(
        report.mapping_states.iter().any(|(_, s)| s == "Disabled"),
        "the mapping was disabled: {:?}",
        report.mapping_states
    );

    // At least two failed probes, under a growing backoff window (full jitter: the waits
    // drawn may shrink, the window they are drawn from never does).
    let owned = demo::probes(std::slice::from_ref(owner), report.started_ms);
    let failed = owned.iter().filter(|p| p.failed()).count();
    assert!(failed >= 2, "failed probes: {owned:#?}");
    let windows: Vec<u64> = owned.iter().filter_map(|p| p.ceiling_s).collect();
    assert!(
        windows.windows(2).all(|w| w[0] <= w[1]) && windows.first() < windows.last(),
        "backoff windows grow: {windows:?}"
    );
    assert!(windows.iter().all(|w| *w <= 4), "capped: {windows:?}");

    // A healthy probe, then the rejitter phase, the slow start, and the circuit closed.
    assert!(owned.iter().any(|p| p.healthy()), "{owned:#?}");
    let order: Vec<&str> = owner.steps.iter().map(|s| s.name.as_str()).collect();
    let position = |state: &str| {
        order
            .iter()
            .rposition(|s| *s == state)
            .unwrap_or_else(|| panic!("{state} not visited: {order:?}"))
    };
    assert!(position("OpenCircuit") < position("StartRejitter"));
    assert!(position("StartRejitter") < position("StopRejitter"));
    assert!(position("StopRejitter") < position("StartSlowStart"));
    assert!(position("StartSlowStart") < position("RampUp"));
    assert!(position("RampUp") < position("CloseCircuit"));
    assert_eq!(order.last(), Some(&"CircuitClosed"));
    assert!(
        report.depths.iter().any(|(_, d)| d.delayed > 0),
        "the backlog was delayed by the rejitter"
    );
    assert_eq!(
        report.mapping_states.last().map(|(_, s)| s.as_str()),
        Some("Enabled")
    );

    // The alarm went to ALARM and was reset to OK.
    let alarm: Vec<&str> = report
        .alarm_states
        .iter()
        .map(|(_, s)| s.as_str())
        .collect();
    assert!(alarm.contains(&"ALARM"), "{alarm:?}");
    assert_eq!(alarm.last(), Some(&"OK"), "{alarm:?}");

    // Zero loss, by content fingerprint: every message sent was processed.
    assert!(report.sent > 50, "{}", report.sent);
    assert_eq!(report.lost, 0);
    assert_eq!(report.processed, report.sent);

    // The console's last picture: the page with the owner's passed states, CloseCircuit too.
    let page = std::fs::read_to_string(options.out_dir.join("console.html")).expect("console");
    assert!(
        page.contains(r#""passed":["OpenCircuit""#),
        "no passed states in the page"
    );
    assert!(page.contains(r#""CloseCircuit""#));
}
