//! `cargo xtask console`: the local stand-in for the Step Functions console. A page on
//! 127.0.0.1 that shows, live, the workflow's graph (drawn from the ASL, the selected
//! execution's current state lit and its passed states marked), the executions and the
//! selected one's event history, and the breaker's panel (circuit, mapping, alarm, queue
//! depth over time, events). Read-only: the server answers GETs only, and what it reads
//! it reads with the operator command's live view.
//!
//! The page is one HTML file (`page.html`, `page.css`, `page.js`, all in the repository)
//! with the graph's SVG and a snapshot of the state inlined; live, it polls
//! `/snapshot.json` every second. The demo writes the same page with its last snapshot as
//! the picture it leaves behind ([`static_page`]).

pub mod browser;
pub mod draw;
pub mod fleet;
pub mod graph;
pub mod state;

use anyhow::{Context, Result};
use axum::extract::State as Extract;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use state::{EventView, Shared, Snapshot};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PAGE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// The workflow's graph, drawn from `statemachine/circuit-breaker.asl.json`.
pub fn workflow_svg() -> Result<String> {
    Ok(graph::Graph::from_asl(&crate::asl::deployed_definition()?)?.svg())
}

/// JSON that can sit inside a `<script>` element: no `</script>` can end it early.
fn script_json(snapshot: &Snapshot) -> String {
    serde_json::to_string(snapshot)
        .unwrap_or_else(|_| "null".into())
        .replace("</", "<\\/")
}

/// The page with `snapshot` inlined; `live` pages poll the server for newer ones.
pub fn page(svg: &str, snapshot: &Snapshot, live: bool) -> String {
    PAGE.replace("/*STYLE*/", STYLE)
        .replace("<!--GRAPH-->", svg)
        .replace(
            "/*DATA*/",
            &format!(
                "const SNAPSHOT = {};\nconst LIVE = {live};\n",
                script_json(snapshot)
            ),
        )
        .replace("/*SCRIPT*/", SCRIPT)
}

/// A self-contained page of `snapshot`: no server, no network.
pub fn static_page(snapshot: &Snapshot) -> Result<String> {
    Ok(page(&workflow_svg()?, snapshot, false))
}

#[derive(Clone)]
struct Served {
    svg: Arc<String>,
    shared: Shared,
}

impl Served {
    fn snapshot(&self) -> Snapshot {
        self.shared.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

async fn index(Extract(served): Extract<Served>) -> Html<String> {
    Html(page(&served.svg, &served.snapshot(), true))
}

async fn snapshot(Extract(served): Extract<Served>) -> impl IntoResponse {
    axum::Json(served.snapshot())
}

/// A running console: its server and the task reading the breaker. Both stop when it is
/// dropped.
pub struct Console {
    pub address: SocketAddr,
    shared: Shared,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Console {
    /// Serves the console of the breaker stack `stack` on 127.0.0.1:`port` (0: any free
    /// port), reading it through `sdk` (pointed at the emulator at `endpoint`). Call it
    /// within a tokio runtime, which then runs the console.
    pub async fn start(
        sdk: &aws_config::SdkConfig,
        endpoint: &str,
        stack: &str,
        port: u16,
    ) -> Result<Console> {
        let svg = Arc::new(workflow_svg()?);
        let breaker = sqs_circuit_breaker::locate::breaker(sdk, stack, &Some(endpoint.to_string()))
            .await
            .with_context(|| format!("finding the breaker stack {stack}"))?;
        let shared: Shared = Arc::new(Mutex::new(Snapshot {
            stack: stack.to_string(),
            state_machine: breaker.state_machine_arn.clone(),
            ..Snapshot::default()
        }));
        // Loopback only: the console shows a stack's data to whoever can reach it.
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .with_context(|| format!("binding the console to 127.0.0.1:{port}"))?;
        let address = listener.local_addr()?;
        let app = Router::new()
            .route("/", get(index))
            .route("/snapshot.json", get(snapshot))
            .with_state(Served {
                svg,
                shared: shared.clone(),
            });
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("console server stopped: {e}");
            }
        });
        let reader = tokio::spawn(state::follow(
            breaker,
            shared.clone(),
            Duration::from_secs(1),
        ));
        Ok(Console {
            address,
            shared,
            tasks: vec![server, reader],
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    /// The page of one execution.
    pub fn execution_url(&self, execution: &str) -> String {
        format!("{}?execution={execution}", self.url())
    }

    /// Adds one of the breaker's events (the demo reads them from its tap on the bus).
    pub fn record_event(&self, event: EventView) {
        if let Ok(mut snapshot) = self.shared.lock() {
            snapshot.events.push(event);
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        self.shared.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Serves the console until interrupted.
pub fn serve(port: u16, stack_port: u16) -> Result<()> {
    let emulator = crate::local::running(stack_port)?;
    crate::local::runtime()?.block_on(async {
        let config = crate::aws::config(&emulator).await;
        let console = Console::start(
            &config,
            &emulator.endpoint(),
            crate::stack::BREAKER_STACK,
            port,
        )
        .await?;
        println!(
            "console of {} on {}: {} (read-only; Ctrl-C to stop)",
            crate::stack::BREAKER_STACK,
            emulator.endpoint(),
            console.url()
        );
        std::future::pending::<()>().await;
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_static_page_inlines_everything_and_cannot_be_broken_out_of() {
        let snapshot = Snapshot {
            error: Some("</script><script>alert(1)</script>".into()),
            ..Snapshot::default()
        };
        let html = page("<svg></svg>", &snapshot, false);
        assert!(html.contains("const LIVE = false;"), "{html}");
        assert!(!html.contains("</script><script>alert"), "{html}");
        for placeholder in ["/*STYLE*/", "<!--GRAPH-->", "/*DATA*/", "/*SCRIPT*/"] {
            assert!(!html.contains(placeholder), "{placeholder} left");
        }
        // Nothing from the network: no remote script, style or font.
        assert!(!html.contains("http://") && !html.contains("https://"));
    }
}
