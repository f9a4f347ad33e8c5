//! The attachment's registration: the controller answering the custom resource
//! `Registration` of `infra/attachment.yaml`. `Create` and `Update` validate the attachment and
//! write its item; `Delete` gives its consumer back if its circuit is open, then deletes the
//! item. Every request is answered on its `ResponseURL`, refusals and errors too: a custom
//! resource that gets no answer holds its stack until `ServiceTimeout`.

use crate::adapters::attachments::{self, Attachments, Put, PutMode};
use crate::adapters::mapping;
use crate::adapters::signals::{Detail, Transition};
use crate::adapters::store::{GAVE_UP, OPEN};
use crate::circuit::CircuitAttachment;
use crate::core::attachment::Attachment;
use crate::core::registration::{
    admit, alarm_beside_queue, consumer_change_allowed, consumer_changes, role_arn, settings,
    CfnRequest, CfnResponse, RequestType, Status,
};
use crate::core::Config;
use crate::error::StepError;
use crate::steps::end::end_open_circuit;
use crate::steps::fleet::BoxFuture;
use crate::steps::Context;
use serde_json::{json, Value};
use std::time::Duration;

/// How long a detach holds the circuit while it gives the consumer back.
const DETACH_LEASE_MS: u64 = 180_000;
/// Attempts at PUTting the answer before the invocation fails (and Lambda retries it).
const ANSWER_ATTEMPTS: u32 = 3;

/// Where the answer goes: the live one PUTs on the pre-signed URL; tests record it.
pub trait Respond: Send + Sync {
    fn send<'a>(&'a self, url: &'a str, body: String) -> BoxFuture<'a, Result<(), String>>;
}

/// Handles one custom-resource request and answers it; the value is what the invocation
/// returns. Only an answer that could not be delivered fails the invocation, so that
/// Lambda's retry of an asynchronous invocation tries again.
pub async fn handle(
    ctx: &Context,
    event: &Value,
    respond: &dyn Respond,
) -> Result<Value, StepError> {
    let request = match CfnRequest::parse(event) {
        Ok(request) => request,
        Err(e) => {
            tracing::error!(error = %e, "unusable custom-resource request");
            return Err(StepError::Fatal(e.to_string()));
        }
    };
    let id = request.attachment_id().map(str::to_owned);
    let span =
        tracing::info_span!("registration", request = ?request.request_type, attachment = ?id);
    let _guard = span.enter();
    let outcome = decide(ctx, &request).await;
    match &outcome {
        Ok(reason) => tracing::info!(reason = %reason, "registration done"),
        Err(reason) => tracing::error!(reason = %reason, "registration refused"),
    }
    let response = CfnResponse::to(&request, id.as_deref(), outcome);
    answer(respond, &request.response_url, &response).await?;
    Ok(json!({"Status": response.status, "Reason": response.reason}))
}

async fn answer(respond: &dyn Respond, url: &str, response: &CfnResponse) -> Result<(), StepError> {
    let mut last = String::new();
    for attempt in 1..=ANSWER_ATTEMPTS {
        match respond.send(url, response.body()).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(attempt, error = %e, "answering CloudFormation failed");
                last = e;
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
            }
        }
    }
    Err(StepError::Transient {
        operation: "custom-resource response".into(),
        message: last,
    })
}

/// `Ok`: the stack may go on (with what was done); `Err`: the stack fails with the reason.
async fn decide(ctx: &Context, request: &CfnRequest) -> Result<String, String> {
    let id = request.attachment_id().ok_or_else(|| {
        format!(
            "the stack {} has no name an attachment can have (1-128 letters, digits or '-', \
             starting with a letter)",
            request.stack_id
        )
    })?;
    if request.request_type == RequestType::Delete
        && request.physical_resource_id.as_deref() != Some(id)
    {
        // A create that was refused registered nothing under this id.
        return Ok(format!(
            "nothing was registered as {:?}",
            request.physical_resource_id
        ));
    }
    let attachments = ctx.fleet.attachments.as_ref().ok_or_else(|| {
        "this breaker deployment has no attachments table (ATTACHMENTS_TABLE): \
         update it to a release that has one"
            .to_string()
    })?;
    match request.request_type {
        RequestType::Create | RequestType::Update => register(ctx, attachments, id, request).await,
        RequestType::Delete => detach(ctx, attachments, id).await,
    }
}

fn aws(e: StepError) -> String {
    e.to_string()
}

/// Validates the attachment and writes its item.
async fn register(
    ctx: &Context,
    attachments: &Attachments,
    id: &str,
    request: &CfnRequest,
) -> Result<String, String> {
    let settings = settings(id, &request.properties).map_err(|e| e.to_string())?;
    let role_arn = role_arn(&request.properties, &request.stack_id).map_err(|e| e.to_string())?;
    let attachment =
        Config::for_attachment(&ctx.fleet.defaults, &settings).map_err(|e| e.to_string())?;
    let alarm_arn = request.properties["AlarmArn"].as_str().unwrap_or_default();
    alarm_beside_queue(&attachment, alarm_arn)?;

    let fleet: Vec<Attachment> = attachments::list(attachments)
        .await
        .map_err(aws)?
        .into_iter()
        .filter(|other| other.id != id)
        .filter_map(
            |other| match Config::for_attachment(&ctx.fleet.defaults, &other.settings) {
                Ok(valid) => Some(valid),
                Err(e) => {
                    tracing::warn!(other = %other.id, error = %e, "a registered attachment is not valid now; not compared");
                    None
                }
            },
        )
        .collect();
    let builtin = (!ctx.fleet.fleet_only).then_some((
        ctx.config.consumer_function.as_str(),
        ctx.config.queue_arn.as_str(),
    ));
    let warnings = admit(&fleet, builtin, &attachment)?;
    for warning in &warnings {
        tracing::warn!(warning = %warning, "shared signal");
    }

    let item = CircuitAttachment {
        id: id.to_owned(),
        settings,
        role_arn,
    };
    let mode = match request.request_type {
        RequestType::Update => {
            consumer_stays_while_open(ctx, attachments, &item).await?;
            PutMode::Update
        }
        _ => PutMode::Register,
    };
    match attachments.put(&item, mode).await.map_err(aws)? {
        Put::Written => {}
        // Its item was removed by hand: an update registers it again.
        Put::NotRegistered => {
            if attachments
                .put(&item, PutMode::Register)
                .await
                .map_err(aws)?
                != Put::Written
            {
                return Err(format!(
                    "attachment {id:?} was registered meanwhile by another request"
                ));
            }
        }
        // A repeated create (CloudFormation retries) finds its own item.
        Put::AlreadyRegistered => {
            let existing = attachments.get(id).await.map_err(aws)?;
            if existing.as_ref().map(|e| &e.settings) != Some(&item.settings) {
                return Err(format!(
                    "an attachment is already registered as {id:?} with other settings (its \
                     stack was deleted without detaching?): remove its item from the \
                     attachments table {}, then deploy again",
                    attachments.table
                ));
            }
        }
    }
    let mut done = format!(
        "registered attachment {id:?}: {} on {}",
        attachment.config.consumer_function, attachment.config.queue_arn
    );
    for warning in warnings {
        done.push_str("; warning: ");
        done.push_str(&warning);
    }
    Ok(done)
}

/// Refuses an update that changes the consumer of an attachment whose circuit is open. The
/// circuit is looked up as the registered attachment's (its consumer, under its role).
async fn consumer_stays_while_open(
    ctx: &Context,
    attachments: &Attachments,
    requested: &CircuitAttachment,
) -> Result<(), String> {
    let id = requested.id.as_str();
    let Some(registered) = attachments.get(id).await.map_err(aws)? else {
        return Ok(());
    };
    let changes = consumer_changes(&registered.settings, &requested.settings);
    if changes.is_empty() {
        return Ok(());
    }
    let cannot = |e: StepError| {
        format!(
            "attachment {id:?}: {} changes, and whether its circuit is open cannot be \
             checked ({e}): fix that and deploy again",
            changes.join(" and ")
        )
    };
    let consumer = ctx.for_consumer(Some(&registered)).await.map_err(cannot)?;
    let open = match mapping::find(
        &consumer.clients.lambda,
        &consumer.config.queue_arn,
        &consumer.config.consumer_function,
    )
    .await
    {
        Ok(found) => consumer
            .store()
            .get(&found.uuid)
            .await
            .map_err(cannot)?
            .is_some_and(|r| r.state == OPEN || r.state == GAVE_UP),
        // The registered consumer has no mapping any more: no circuit to strand.
        Err(StepError::MappingNotFound { .. }) => false,
        Err(e) => return Err(cannot(e)),
    };
    consumer_change_allowed(id, &changes, open)
}

/// Gives the consumer back if its circuit is open, then deletes the item. Anything that
/// stops the give-back fails the delete (the stack stays in DELETE_FAILED, the item stays),
/// so that no consumer is left disabled without anyone to close its circuit.
async fn detach(ctx: &Context, attachments: &Attachments, id: &str) -> Result<String, String> {
    let Some(registered) = attachments.get(id).await.map_err(aws)? else {
        return Ok(format!(
            "attachment {id:?} was not registered; nothing to do"
        ));
    };
    let cannot = |e: StepError| {
        format!(
            "attachment {id:?}: cannot check whether its circuit is open ({e}); it stays \
             registered. Fix that and delete the stack again"
        )
    };
    let consumer = ctx.for_consumer(Some(&registered)).await.map_err(cannot)?;
    let config = &consumer.config;
    let given_back = match mapping::find(
        &consumer.clients.lambda,
        &config.queue_arn,
        &config.consumer_function,
    )
    .await
    {
        Ok(found) => give_back(&consumer, id, &found.uuid)
            .await
            .map_err(cannot)?,
        // No mapping, no circuit to give back.
        Err(StepError::MappingNotFound { .. }) => None,
        Err(e) => return Err(cannot(e)),
    };
    attachments.delete(id).await.map_err(aws)?;
    Ok(match given_back {
        Some(uuid) => format!(
            "detached attachment {id:?}; its open circuit was closed and mapping {uuid} enabled"
        ),
        None => format!("detached attachment {id:?}"),
    })
}

/// Ends the circuit of `uuid` if it is open, as an operator's close does (the rejitter off,
/// the mapping given back, the circuit CLOSED, the alarm re-armed, `Circuit Closed`). The
/// execution that held it finds it gone at its next step and stands aside.
async fn give_back(ctx: &Context, id: &str, uuid: &str) -> Result<Option<String>, StepError> {
    let store = ctx.store();
    let Some(mut record) = store
        .get(uuid)
        .await?
        .filter(|r| r.state == OPEN || r.state == GAVE_UP)
    else {
        return Ok(None);
    };
    let reason = format!("detached: attachment {id} was deleted");
    let me = format!("detach of {id} at {}", ctx.now_ms());
    let previous = record.owner.clone();
    if !store
        .take_over(
            uuid,
            &me,
            &previous,
            &reason,
            ctx.now_ms() + DETACH_LEASE_MS,
        )
        .await?
    {
        return Err(StepError::Fatal(format!(
            "the circuit of mapping {uuid} changed hands meanwhile"
        )));
    }
    record.owner = me.clone();
    let snapshot = end_open_circuit(ctx, &me, &record, &reason).await?;
    let detail = Detail {
        mapping: snapshot.uuid.clone(),
        queue: snapshot.event_source_arn.clone(),
        function: ctx.config.consumer_function.clone(),
        execution: previous,
        attempt: 0,
        reason: reason.clone(),
    };
    ctx.signals().emit(Transition::CircuitClosed, &detail).await;
    tracing::info!(mapping = %uuid, reason = %reason, "circuit closed on detach");
    Ok(Some(uuid.to_owned()))
}

/// The answer to a request the controller cannot serve at all (its own configuration is
/// refused): the stack fails with why, instead of waiting for `ServiceTimeout`.
pub async fn refuse(
    event: &Value,
    reason: &str,
    respond: &dyn Respond,
) -> Result<Value, StepError> {
    let request = CfnRequest::parse(event).map_err(|e| StepError::Fatal(e.to_string()))?;
    let response = CfnResponse::to(&request, request.attachment_id(), Err(reason.to_owned()));
    answer(respond, &request.response_url, &response).await?;
    Ok(json!({"Status": Status::Failed, "Reason": response.reason}))
}

/// PUTs the answer with hyper over rustls (the TLS stack the AWS SDK already links): https
/// on AWS (a pre-signed S3 URL), plain http on a local emulator. No `Content-Type`: the URL's
/// signature covers none.
pub struct HttpResponder {
    client: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        http_body_util::Full<hyper::body::Bytes>,
    >,
}

/// How long one PUT of the answer may take.
const PUT_TIMEOUT: Duration = Duration::from_secs(30);

impl HttpResponder {
    pub fn new() -> Result<HttpResponder, String> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("loading the system's root certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Ok(HttpResponder { client })
    }
}

impl Respond for HttpResponder {
    fn send<'a>(&'a self, url: &'a str, body: String) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let request = hyper::Request::builder()
                .method(hyper::Method::PUT)
                .uri(url)
                .header(hyper::header::CONTENT_LENGTH, body.len())
                .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
                .map_err(|e| format!("the response URL {url:?}: {e}"))?;
            let response = tokio::time::timeout(PUT_TIMEOUT, self.client.request(request))
                .await
                .map_err(|_| format!("no answer from the response URL in {PUT_TIMEOUT:?}"))?
                .map_err(|e| format!("PUT on the response URL: {e}"))?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("PUT on the response URL answered {status}"))
            }
        })
    }
}
