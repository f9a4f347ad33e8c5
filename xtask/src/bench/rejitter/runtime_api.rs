//! The fake Lambda Runtime API: `/next` hands out the events the driver sends, blocking until
//! there is one as Lambda does, and every `/response` and `/error` is reported back.

use anyhow::Result;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{Response, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::serve::Served;
use super::FUNCTION_ARN;

pub enum Outcome {
    Response(Vec<u8>),
    Error(Vec<u8>),
    InitError(Vec<u8>),
}

pub struct Done {
    pub request_id: String,
    pub outcome: Outcome,
    pub at: Instant,
}

/// Serves `/next` with the events the driver sends on `events` (request id and body) and
/// reports every `/response` and `/error` on `done`.
pub struct RuntimeApi {
    pub server: Served,
    pub events: SyncSender<(String, String)>,
    pub done: Receiver<Done>,
}

struct Fake {
    next: Mutex<Receiver<(String, String)>>,
    report: Sender<Done>,
}

impl Fake {
    fn reported(&self, request_id: &str, outcome: Outcome) -> Response<Body> {
        let _ = self.report.send(Done {
            request_id: request_id.to_owned(),
            outcome,
            at: Instant::now(),
        });
        reply(StatusCode::ACCEPTED, "{\"status\":\"OK\"}")
    }
}

impl RuntimeApi {
    pub fn start() -> Result<RuntimeApi> {
        let (events, next) = mpsc::sync_channel::<(String, String)>(1);
        let (report, done) = mpsc::channel::<Done>();
        let fake = Arc::new(Fake {
            next: Mutex::new(next),
            report,
        });
        let server = Served::start(move |_| {
            Router::new()
                .route("/2018-06-01/runtime/invocation/next", get(next_event))
                .route(
                    "/2018-06-01/runtime/invocation/{id}/response",
                    post(
                        |State(fake): State<Arc<Fake>>, Path(id): Path<String>, body: Bytes| async move {
                            fake.reported(&id, Outcome::Response(body.to_vec()))
                        },
                    ),
                )
                .route(
                    "/2018-06-01/runtime/invocation/{id}/error",
                    post(
                        |State(fake): State<Arc<Fake>>, Path(id): Path<String>, body: Bytes| async move {
                            fake.reported(&id, Outcome::Error(body.to_vec()))
                        },
                    ),
                )
                .route(
                    "/2018-06-01/runtime/init/error",
                    post(|State(fake): State<Arc<Fake>>, body: Bytes| async move {
                        fake.reported("", Outcome::InitError(body.to_vec()))
                    }),
                )
                .with_state(fake)
        })?;
        Ok(RuntimeApi {
            server,
            events,
            done,
        })
    }
}

/// The next event, once the driver sends one: the wait is on a blocking thread, as the
/// driver's channel is a plain one.
async fn next_event(State(fake): State<Arc<Fake>>) -> Response<Body> {
    let event = tokio::task::spawn_blocking(move || {
        fake.next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv()
    })
    .await;
    let Ok(Ok((request_id, body))) = event else {
        return reply(StatusCode::INTERNAL_SERVER_ERROR, "the benchmark is over");
    };
    let deadline_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        + 900_000;
    Response::builder()
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", request_id)
        .header("lambda-runtime-deadline-ms", deadline_ms.to_string())
        .header("lambda-runtime-invoked-function-arn", FUNCTION_ARN)
        .header(
            "lambda-runtime-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=0",
        )
        .body(Body::from(body))
        .unwrap_or_else(|_| reply(StatusCode::INTERNAL_SERVER_ERROR, "bad event"))
}

fn reply(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
}
