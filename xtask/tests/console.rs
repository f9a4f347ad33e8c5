//! The console page in a real browser (headless Chromium, a 1600-pixel window): its graph
//! legible without zooming, with its error paths on demand, and its fleet list and consumer
//! picker (no stack needed); and during a
//! short outage on a local emulator, what it shows when the circuit has opened, while it
//! probes, and after it closed (the lit state, the execution's status, the consumer mapping's
//! state), with a screenshot of each under `.local/`.

use anyhow::{ensure, Context, Result};
use sqs_circuit_breaker::fleet::BUILT_IN;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use xtask::console::browser::{self, states_with_class, text_of};
use xtask::console::fleet::ConsumerRow;
use xtask::console::state::{ExecutionView, HistoryEvent, Snapshot};
use xtask::console::Console;
use xtask::stack::{fast_breaker, fast_example, Deployment, BREAKER_STACK};
use xtask::wait::eventually;
use xtask::{aws, traffic};

/// The states of the probe loop: where a probing execution can be lit.
const PROBING: [&str; 5] = [
    "WaitBeforeProbe",
    "Probe",
    "ProbeVerdict",
    "NextBackoff",
    "BackoffOrGiveUp",
];

fn deploy() -> Result<(tokio::runtime::Runtime, Deployment)> {
    let mut breaker = fast_breaker();
    breaker.extend([
        // The test starts its one execution itself: the consumer's errors start none.
        ("AlarmThreshold", "1000000".into()),
        ("MaxCircuitsPerHour", "0".into()),
    ]);
    Deployment::start(&fast_example(), &breaker)
}

/// An attachment registered in the deployment's table whose consumer does not exist: the
/// fleet list shows it, with why its circuit cannot be read.
const SECOND: &str = "console-second";

async fn register_second(d: &Deployment) -> Result<()> {
    use controller::adapters::attachments::{Attachments, Put, PutMode};
    let table = Attachments {
        dynamodb: d.dynamodb.clone(),
        table: d.breaker["AttachmentsTableName"].clone(),
    };
    let attachment = controller::circuit::CircuitAttachment {
        id: SECOND.into(),
        settings: serde_json::json!({
            "Id": SECOND,
            "ConsumerFunctionName": format!("{SECOND}-consumer"),
            "QueueArn": format!("arn:aws:sqs:{}:000000000000:{SECOND}", xtask::sam::REGION),
            "AlarmName": format!("{SECOND}-failing"),
        }),
        role_arn: None,
    };
    let put = table.put(&attachment, PutMode::Register).await?;
    ensure!(put == Put::Written, "{put:?}");
    Ok(())
}

/// What the page shows, read from the browser's DOM, and its screenshot saved as `name`.
struct Shown {
    lit: Vec<String>,
    passed: Vec<String>,
    current_text: Option<String>,
    status: Option<String>,
    mapping: Option<String>,
}

impl std::fmt::Debug for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lit {:?}, passed {:?}, current {:?}, status {:?}, mapping {:?}",
            self.lit, self.passed, self.current_text, self.status, self.mapping
        )
    }
}

async fn look(chromium: &Path, url: &str, name: &str) -> Result<Shown> {
    let (chromium, url) = (chromium.to_path_buf(), url.to_string());
    let shot = xtask::paths::local().join(format!("console-{name}.png"));
    tokio::task::spawn_blocking(move || {
        let dom = browser::dump_dom(&chromium, &url)?;
        browser::screenshot(&chromium, &url, &shot)?;
        eprintln!("screenshot: {}", shot.display());
        anyhow::Ok(Shown {
            lit: states_with_class(&dom, "current"),
            passed: states_with_class(&dom, "passed"),
            current_text: text_of(&dom, "current-state"),
            status: text_of(&dom, "selected-status"),
            mapping: text_of(&dom, "mapping"),
        })
    })
    .await
    .context("the browser task panicked")?
}

/// Whether the console's own reading shows the execution past `states` entries of `state`.
fn console_saw(console: &Console, execution: &str, state: &str, times: usize) -> bool {
    console.snapshot().executions.iter().any(|e| {
        e.arn == execution
            && e.history
                .iter()
                .filter(|h| h.kind.ends_with("StateEntered") && h.state.as_deref() == Some(state))
                .count()
                >= times
    })
}

fn browser_or_skip() -> Option<PathBuf> {
    match browser::chromium() {
        Ok(path) => Some(path),
        // CI runs as root on Debian: there the browser can be installed, so it must run.
        Err(e) if std::env::var_os("CI").is_some() => panic!("no browser on CI: {e:#}"),
        Err(e) => {
            eprintln!("SKIPPED: the console's browser test needs chromium: {e:#}");
            None
        }
    }
}

/// Measures the graph as the browser draws it, then points at and clicks states as a user
/// would, and writes what it saw as JSON in a `<pre>` of id `measured`; leaves `Probe` selected
/// for the screenshot.
const MEASURE: &str = r#"<script>
(() => {
  const graph = document.getElementById("graph");
  const svg = graph.querySelector("svg");
  const box = (e) => e.getBoundingClientRect();
  const shown = () => [...graph.querySelectorAll("g.edge.catch")]
    .filter((e) => getComputedStyle(e).display !== "none")
    .map((e) => `${e.dataset.from} to ${e.dataset.to}`).sort();
  const at = (name, type) => graph.querySelector(`g.state[data-state="${name}"] rect`)
    .dispatchEvent(new MouseEvent(type, { bubbles: true }));
  const leave = () => graph.dispatchEvent(new MouseEvent("mouseleave"));
  const rects = [...graph.querySelectorAll("g.state rect")].map(box);
  const inside = (b) => rects.some((r) => b.left >= r.left - 0.5 && b.right <= r.right + 0.5
    && b.top >= r.top - 0.5 && b.bottom <= r.bottom + 0.5);
  const labels = [...graph.querySelectorAll("text")].filter((t) => t.textContent.trim());
  const root = document.documentElement;
  const seen = {
    window: root.clientWidth,
    graph: [box(svg).left, box(svg).right],
    page_scrolls_sideways: root.scrollWidth > root.clientWidth,
    graph_scrolls_sideways: graph.scrollWidth > graph.clientWidth,
    labels: labels.length,
    smallest_px: Math.min(...labels.map((t) =>
      parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a)),
    overflowing: labels.filter((t) => !inside(box(t))).map((t) => t.textContent),
    lit: [...graph.querySelectorAll("g.state.current")].map((g) => g.dataset.state),
    by_default: shown(),
  };
  at("Probe", "mouseover"); seen.hovered = shown();
  leave(); seen.left = shown();
  at("CheckHold", "click"); seen.clicked = shown();
  at("Probe", "mouseover"); seen.clicked_and_hovered = shown();
  leave(); at("CheckHold", "click"); seen.unclicked = shown();
  const all = document.getElementById("all-errors");
  all.checked = true; all.dispatchEvent(new Event("change"));
  seen.all = shown().length; seen.catches = graph.querySelectorAll("g.edge.catch").length;
  all.checked = false; all.dispatchEvent(new Event("change"));
  at("Probe", "click");
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify(seen);
  document.body.append(out);
})();
</script>"#;

/// An execution probing: entered `OpenCircuit` .. `Probe`, in `Probe` now.
fn probing() -> Snapshot {
    let passed = ["OpenCircuit", "IsCircuitOpen", "WaitBeforeProbe", "Probe"];
    let history = passed
        .iter()
        .zip(1..)
        .map(|(state, id)| HistoryEvent {
            id,
            at_ms: 1_000 * id,
            kind: "TaskStateEntered".into(),
            state: Some(state.to_string()),
            input: None,
            output: None,
            error: None,
        })
        .collect();
    Snapshot {
        stack: "legible".into(),
        executions: vec![ExecutionView {
            arn: "arn:aws:states:us-east-1:000000000000:execution:breaker:probing".into(),
            name: "probing".into(),
            status: "RUNNING".into(),
            consumer: Some("legible".into()),
            start_ms: Some(1_000),
            stop_ms: None,
            current: Some("Probe".into()),
            passed: passed.iter().map(|s| s.to_string()).collect(),
            history,
        }],
        ..Snapshot::default()
    }
}

/// Writes `snapshot`'s saved page, with `script` before its end, as `.local/<name>.html`;
/// its `file://` URL.
fn saved_page(snapshot: &Snapshot, script: &str, name: &str) -> Result<String> {
    let html =
        xtask::console::static_page(snapshot)?.replace("</body>", &format!("{script}</body>"));
    let page = xtask::paths::local().join(format!("{name}.html"));
    std::fs::create_dir_all(xtask::paths::local())?;
    std::fs::write(&page, html)?;
    Ok(format!("file://{}", page.display()))
}

/// The JSON a page's script wrote in its `<pre id="measured">`.
fn measured(dom: &str) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(
        &text_of(dom, "measured")
            .context("the page measured nothing")?
            .replace("&amp;", "&")
            .replace("&quot;", "\""),
    )?)
}

#[test]
#[ignore = "needs chromium; run with `cargo xtask test`"]
fn the_graph_is_legible_in_a_1600_pixel_window() -> Result<()> {
    let Some(chromium) = browser_or_skip() else {
        return Ok(());
    };
    let url = saved_page(&probing(), MEASURE, "console-legible")?;
    let dom = browser::dump_dom(&chromium, &url)?;
    let shot = xtask::paths::local().join("console-legible.png");
    browser::screenshot(&chromium, &url, &shot)?;
    eprintln!("screenshot: {}", shot.display());
    let seen = measured(&dom)?;
    let strings = |key: &str| -> Vec<String> {
        seen[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let number = |key: &str| seen[key].as_f64().unwrap_or(f64::NAN);
    ensure!(number("window") == f64::from(browser::WINDOW.0), "{seen}");
    // The whole graph in the window's width: nothing scrolls sideways.
    let (left, right) = (seen["graph"][0].as_f64(), seen["graph"][1].as_f64());
    ensure!(
        left.is_some_and(|l| l >= 0.0) && right.is_some_and(|r| r <= number("window")),
        "{seen}"
    );
    ensure!(seen["page_scrolls_sideways"] == false, "{seen}");
    ensure!(seen["graph_scrolls_sideways"] == false, "{seen}");
    // Every state's name drawn at 12 px or more, inside its box.
    ensure!(number("labels") >= 40.0, "{seen}");
    ensure!(number("smallest_px") >= 12.0, "{seen}");
    ensure!(strings("overflowing").is_empty(), "{seen}");
    ensure!(strings("lit") == ["Probe"], "{seen}");
    // Error paths: none by default; those of the state pointed at, or clicked, or all.
    let probe = ["Probe to CircuitClosedElsewhere", "Probe to Failsafe"];
    let check_hold = [
        "CheckHold to CircuitClosedElsewhere",
        "CheckHold to Failsafe",
    ];
    ensure!(strings("by_default").is_empty(), "{seen}");
    ensure!(strings("hovered") == probe, "{seen}");
    ensure!(strings("left").is_empty(), "{seen}");
    ensure!(strings("clicked") == check_hold, "{seen}");
    let mut both: Vec<&str> = probe.iter().chain(&check_hold).copied().collect();
    both.sort();
    ensure!(strings("clicked_and_hovered") == both, "{seen}");
    ensure!(strings("unclicked").is_empty(), "{seen}");
    ensure!(
        number("catches") > 20.0 && number("all") == number("catches"),
        "{seen}"
    );
    Ok(())
}

/// Reads the fleet list and the executions listed as the page first shows them, then picks
/// the consumer `orders` in the picker as a user would and reads them again, with the URL;
/// writes it all as JSON in a `<pre>` of id `measured`.
const PICK: &str = r#"<script>
(() => {
  const rows = (id) => [...document.querySelectorAll(`#${id} tr[data-consumer]`)];
  const look = () => ({
    fleet: rows("fleet").map((r) => r.dataset.consumer),
    open: rows("fleet").filter((r) => r.classList.contains("open")).map((r) => r.dataset.consumer),
    open_background: rows("fleet").map((r) => getComputedStyle(r).backgroundColor),
    executions: rows("executions").map((r) => r.dataset.consumer),
    graph_of: document.getElementById("selected-name").textContent,
    picker: document.getElementById("consumer").value,
    search: location.search,
  });
  const seen = { first: look() };
  const picker = document.getElementById("consumer");
  picker.value = "orders";
  picker.dispatchEvent(new Event("change"));
  seen.picked = look();
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify(seen);
  document.body.append(out);
})();
</script>"#;

/// A deployment guarding two consumers: its built-in one (`built-in`, closed, with two
/// executions) and the attachment `orders` (open, with one).
fn two_consumers() -> Snapshot {
    let row = |id: &str, circuit: &str| ConsumerRow {
        id: id.into(),
        function: format!("{id}-consumer"),
        queue: format!("{id}-queue"),
        circuit: circuit.into(),
        circuit_reason: String::new(),
        open: circuit == "OPEN",
        alarm: Some(if circuit == "OPEN" { "ALARM" } else { "OK" }.into()),
        depth: None,
        problem: None,
    };
    let execution = |name: &str, input: &str, at: i64| {
        let arn = format!("arn:aws:states:us-east-1:000000000000:execution:breaker:{name}");
        let started = HistoryEvent {
            id: 1,
            at_ms: at,
            kind: "ExecutionStarted".into(),
            state: None,
            input: Some(input.into()),
            output: None,
            error: None,
        };
        ExecutionView::from_history(&arn, "SUCCEEDED", vec![started])
    };
    let alarm = r#"{"source": "aws.cloudwatch"}"#;
    let mut snapshot = Snapshot {
        stack: "team-breaker".into(),
        consumers: vec![row(BUILT_IN, "CLOSED"), row("orders", "OPEN")],
        ..Snapshot::default()
    };
    snapshot.upsert(execution("builtin-old", alarm, 1_000));
    snapshot.upsert(execution(
        "orders-1",
        &format!(r#"{{"attachment": "orders", "event": {alarm}}}"#),
        2_000,
    ));
    snapshot.upsert(execution("builtin-new", alarm, 3_000));
    snapshot
}

#[test]
#[ignore = "needs chromium; run with `cargo xtask test`"]
fn the_fleet_is_listed_and_picking_a_consumer_filters_its_executions() -> Result<()> {
    let Some(chromium) = browser_or_skip() else {
        return Ok(());
    };
    let url = saved_page(&two_consumers(), PICK, "console-fleet")?;
    let seen = measured(&browser::dump_dom(&chromium, &url)?)?;
    let first = &seen["first"];
    ensure!(
        first["fleet"] == serde_json::json!([BUILT_IN, "orders"]),
        "{seen}"
    );
    ensure!(first["open"] == serde_json::json!(["orders"]), "{seen}");
    // The open circuit's row stands out: a background of its own.
    ensure!(
        first["open_background"][0] != first["open_background"][1],
        "{seen}"
    );
    ensure!(
        first["executions"] == serde_json::json!([BUILT_IN, "orders", BUILT_IN]),
        "{seen}"
    );
    ensure!(first["graph_of"] == "builtin-new", "{seen}");
    let picked = &seen["picked"];
    ensure!(
        picked["executions"] == serde_json::json!(["orders"]),
        "{seen}"
    );
    ensure!(picked["graph_of"] == "orders-1", "{seen}");
    ensure!(picked["search"] == "?consumer=orders", "{seen}");

    // A reload keeps the choice: the page opened with it in its URL shows it.
    let reloaded = measured(&browser::dump_dom(
        &chromium,
        &format!("{url}?consumer=orders"),
    )?)?;
    let first = &reloaded["first"];
    ensure!(first["picker"] == "orders", "{reloaded}");
    ensure!(
        first["executions"] == serde_json::json!(["orders"]),
        "{reloaded}"
    );
    ensure!(first["graph_of"] == "orders-1", "{reloaded}");
    let shot = xtask::paths::local().join("console-fleet.png");
    browser::screenshot(&chromium, &format!("{url}?consumer=orders"), &shot)?;
    eprintln!("screenshot: {}", shot.display());
    Ok(())
}

#[test]
#[ignore = "needs the local AWS stack; run with `cargo xtask test`"]
fn the_console_shows_the_circuit_open_probing_and_closed_in_a_browser() -> Result<()> {
    let Some(chromium) = browser_or_skip() else {
        return Ok(());
    };
    let (runtime, d) = deploy()?;
    runtime.block_on(async {
        let config = aws::config(&d.local.emulator).await;
        let console = Console::start(
            &config,
            &d.local.emulator.endpoint(),
            BREAKER_STACK,
            0,
        )
        .await?;
        ensure!(console.address.ip().is_loopback(), "{}", console.address);

        register_second(&d).await?;
        d.outage(true).await?;
        traffic::send(&d.sqs, d.queue(), "console", 10).await?;
        let execution = d.start_alarm_execution().await?;
        let page = console.execution_url(&execution);
        // An execution for the second consumer: it reads the attachment, finds no such
        // mapping and ends, touching nothing of the first.
        let second = xtask::breaker::start(
            &d.sfn,
            &d.breaker["StateMachineArn"],
            &serde_json::json!({"attachment": SECOND, "event": {"operator": {"by": "console test"}}}),
        )
        .await?;

        // Open: the mapping disabled, the execution running past OpenCircuit.
        eventually(
            "the console to see the circuit open",
            Duration::from_secs(60),
            || async {
                let seen = console.snapshot();
                Ok(
                    (seen.mapping.as_ref().is_some_and(|m| m.state == "Disabled")
                        && console_saw(&console, &execution, "WaitBeforeProbe", 1))
                    .then_some(()),
                )
            },
        )
        .await?;
        let open = look(&chromium, &page, "open").await?;
        ensure!(
            open.status.as_deref() == Some("RUNNING"),
            "at open: {open:?}"
        );
        ensure!(
            open.mapping.as_deref() == Some("Disabled"),
            "at open: {open:?}"
        );
        ensure!(
            open.passed.iter().any(|s| s == "OpenCircuit"),
            "at open: {open:?}"
        );
        ensure!(open.lit.len() == 1, "one state lit at open: {open:?}");

        // The fleet: the built-in consumer's circuit open, the attachment listed with why its
        // circuit cannot be read; picking the attachment lists its execution only.
        let fleet = console.snapshot().consumers;
        let ids: Vec<(&str, &str, bool)> = fleet
            .iter()
            .map(|c| (c.id.as_str(), c.circuit.as_str(), c.open))
            .collect();
        ensure!(
            ids == [(BUILT_IN, "OPEN", true), (SECOND, "?", false)],
            "{fleet:?}"
        );
        ensure!(fleet[1].problem.is_some(), "{fleet:?}");
        eventually("both executions listed", Duration::from_secs(30), || async {
            let seen = console.snapshot().executions;
            let of = |arn: &str| seen.iter().find(|e| e.arn == arn).and_then(|e| e.consumer.clone());
            Ok((of(&execution).as_deref() == Some(BUILT_IN)
                && of(&second).as_deref() == Some(SECOND))
            .then_some(()))
        })
        .await?;
        let chromium_path = chromium.clone();
        let picked = format!("{}?consumer={SECOND}", console.url());
        let dom = tokio::task::spawn_blocking(move || browser::dump_dom(&chromium_path, &picked))
            .await??;
        ensure!(
            dom.contains(&format!("data-consumer=\"{BUILT_IN}\" class=\"open")),
            "the open circuit's row does not stand out: {dom}"
        );
        // The executions listed: the rows of the table's body (the page's script, inlined,
        // has the row's template too).
        let listed = dom
            .split_once("id=\"executions\">")
            .and_then(|(_, rest)| rest.split_once("</tbody>"))
            .map(|(rows, _)| rows.matches("<tr").count());
        ensure!(
            listed == Some(1)
                && text_of(&dom, "selected-name").as_deref() == second.rsplit(':').next(),
            "the picked consumer's one execution: {dom}"
        );

        // Probing: two failed probes seen; the lit state is in the probe loop.
        eventually("two probes", Duration::from_secs(60), || async {
            Ok(console_saw(&console, &execution, "NextBackoff", 2).then_some(()))
        })
        .await?;
        let probing = look(&chromium, &page, "probing").await?;
        ensure!(
            probing.status.as_deref() == Some("RUNNING"),
            "probing: {probing:?}"
        );
        ensure!(
            probing.mapping.as_deref() == Some("Disabled"),
            "probing: {probing:?}"
        );
        ensure!(
            probing.lit.len() == 1 && PROBING.contains(&probing.lit[0].as_str()),
            "probing: {probing:?}"
        );
        ensure!(
            probing.current_text.as_ref() == probing.lit.first(),
            "probing: {probing:?}"
        );
        for state in ["OpenCircuit", "IsCircuitOpen", "Probe", "NextBackoff"] {
            ensure!(
                probing.passed.iter().any(|s| s == state),
                "{state}: {probing:?}"
            );
        }

        // Closed: the consumer healed, the next probe succeeds and the circuit closes.
        d.outage(false).await?;
        eventually(
            "the console to see the close",
            Duration::from_secs(90),
            || async {
                let seen = console.snapshot();
                let done = seen
                    .executions
                    .iter()
                    .any(|e| e.arn == execution && e.status == "SUCCEEDED");
                let enabled = seen.mapping.as_ref().is_some_and(|m| m.state == "Enabled");
                Ok((done && enabled).then_some(()))
            },
        )
        .await?;
        let closed = look(&chromium, &page, "closed").await?;
        ensure!(
            closed.status.as_deref() == Some("SUCCEEDED"),
            "closed: {closed:?}"
        );
        ensure!(
            closed.mapping.as_deref() == Some("Enabled"),
            "closed: {closed:?}"
        );
        ensure!(closed.lit == ["CircuitClosed"], "closed: {closed:?}");
        ensure!(
            closed.passed.iter().any(|s| s == "CloseCircuit"),
            "closed: {closed:?}"
        );
        let fleet = console.snapshot().consumers;
        ensure!(
            fleet.first().is_some_and(|c| c.circuit == "CLOSED" && !c.open),
            "closed: {fleet:?}"
        );

        // Read-only: the page's server answers nothing but GET.
        let mut stream = std::net::TcpStream::connect(console.address)?;
        stream.write_all(
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        ensure!(
            answer.starts_with("HTTP/1.1 405"),
            "POST / answered {answer}"
        );
        Ok(())
    })
}
