//! CloudWatch Logs for xtask: reading back what the Lambdas logged (`FilterLogEvents`), and
//! the tests' few other reads, as SigV4-signed JSON requests to the local emulator on the
//! hyper client the AWS SDK already links.
//!
//! Not `aws-sdk-cloudwatchlogs`: for these calls, that crate was 35 s of the 366 s of CPU a
//! fresh clone's first `cargo xtask` spends compiling (debug, 2 cores), a tenth of the wait
//! before the demo starts.

use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use std::time::SystemTime;

const TARGET_PREFIX: &str = "Logs_20140328";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// A CloudWatch Logs client for the emulator's endpoint, with the SDK configuration's region
/// and credentials.
#[derive(Clone)]
pub struct Logs {
    endpoint: String,
    region: String,
    credentials: SharedCredentialsProvider,
    http: Client<HttpConnector, Full<Bytes>>,
}

/// Why a Logs call failed.
#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("log group {0} does not exist")]
    GroupNotFound(String),
    #[error("CloudWatch Logs refused {action} ({status}): {kind}: {message}")]
    Refused {
        action: String,
        status: u16,
        kind: String,
        message: String,
    },
    #[error("CloudWatch Logs at {endpoint}: {reason}")]
    Transport { endpoint: String, reason: String },
    #[error("signing the request: {0}")]
    Signing(String),
    #[error(
        "log group {group}: a full page of {events} events came without a nextToken, so later \
         events cannot be read (the emulator does not paginate FilterLogEvents)"
    )]
    Unpaged { group: String, events: usize },
}

/// Tries of a call that fails transiently.
const ATTEMPTS: u64 = 3;

impl LogsError {
    /// Whether trying again may succeed: no answer, a server error or throttling.
    fn is_transient(&self) -> bool {
        match self {
            LogsError::Transport { .. } => true,
            LogsError::Refused { status, kind, .. } => {
                *status >= 500 || kind.contains("Throttling") || kind == "ServiceUnavailable"
            }
            _ => false,
        }
    }
}

/// Most events one `FilterLogEvents` page holds.
const MAX_EVENTS_PER_PAGE: usize = 10_000;

/// One page of `FilterLogEvents`: the events' messages, oldest first, and where the search
/// goes on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub messages: Vec<String>,
    pub next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageBody {
    #[serde(default)]
    events: Vec<EventBody>,
    next_token: Option<String>,
}

#[derive(Deserialize)]
struct EventBody {
    message: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "__type", default)]
    kind: String,
    #[serde(alias = "Message", default)]
    message: String,
}

impl Logs {
    /// A client for `config`'s endpoint, which must be a plain `http://` one (the local
    /// emulator's): the client speaks no TLS.
    pub fn new(config: &SdkConfig) -> anyhow::Result<Logs> {
        let endpoint = config
            .endpoint_url()
            .filter(|url| url.starts_with("http://"))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "reading CloudWatch Logs needs the local emulator's http:// endpoint, \
                     and the SDK configuration has {:?}",
                    config.endpoint_url()
                )
            })?;
        let region = config
            .region()
            .ok_or_else(|| anyhow::anyhow!("the SDK configuration has no region"))?;
        let credentials = config
            .credentials_provider()
            .ok_or_else(|| anyhow::anyhow!("the SDK configuration has no credentials"))?;
        Ok(Logs {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: region.to_string(),
            credentials,
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// The messages of every event of `group` that matches `pattern` (CloudWatch Logs'
    /// filter syntax; empty: every event), oldest first, page after page.
    ///
    /// A pattern keeps the read small and, on the emulator, complete: MiniStack 1.5.33
    /// returns at most one page of 10,000 events and no `nextToken`. A full page without a
    /// token is refused, not read as everything.
    pub async fn messages(&self, group: &str, pattern: &str) -> Result<Vec<String>, LogsError> {
        let mut messages = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .filter_log_events(group, pattern, token.as_deref())
                .await?;
            let events = page.messages.len();
            messages.extend(page.messages);
            match page.next_token {
                // An empty page with a token is normal on AWS: the search goes on.
                Some(next) if Some(&next) != token.as_ref() => token = Some(next),
                None if events >= MAX_EVENTS_PER_PAGE => {
                    return Err(LogsError::Unpaged {
                        group: group.to_string(),
                        events,
                    })
                }
                _ => return Ok(messages),
            }
        }
    }

    /// The events of `group` that match `pattern` (empty: every event), one page from
    /// `next_token` on.
    pub async fn filter_log_events(
        &self,
        group: &str,
        pattern: &str,
        next_token: Option<&str>,
    ) -> Result<Page, LogsError> {
        let mut body = serde_json::json!({ "logGroupName": group });
        if !pattern.is_empty() {
            body["filterPattern"] = pattern.into();
        }
        if let Some(token) = next_token {
            body["nextToken"] = token.into();
        }
        let answer = match self.call("FilterLogEvents", &body).await {
            Err(LogsError::Refused { kind, .. }) if kind == "ResourceNotFoundException" => {
                return Err(LogsError::GroupNotFound(group.to_string()))
            }
            answer => answer?,
        };
        let page: PageBody = serde_json::from_value(answer).map_err(|e| {
            self.transport(format!("an answer that is not a FilterLogEvents page: {e}"))
        })?;
        Ok(Page {
            messages: page.events.into_iter().filter_map(|e| e.message).collect(),
            next_token: page.next_token,
        })
    }

    /// Calls the CloudWatch Logs operation `action` (`DescribeLogGroups`, say) with its JSON
    /// request `body`; returns its JSON answer. A transient failure (no answer, a server
    /// error, throttling) is tried again, twice, as the AWS SDK's standard retries would.
    pub async fn call(
        &self,
        action: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, LogsError> {
        let mut attempt = 1;
        loop {
            match self.call_once(action, body).await {
                Err(e) if attempt < ATTEMPTS && e.is_transient() => {
                    tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                    attempt += 1;
                }
                answer => return answer,
            }
        }
    }

    async fn call_once(
        &self,
        action: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, LogsError> {
        let target = format!("{TARGET_PREFIX}.{action}");
        let (status, response) = self.post(&target, body.to_string()).await?;
        if status == 200 {
            return serde_json::from_slice(&response).map_err(|e| {
                self.transport(format!("an answer to {action} that is not JSON: {e}"))
            });
        }
        let error: ErrorBody = serde_json::from_slice(&response).unwrap_or(ErrorBody {
            kind: String::new(),
            message: String::from_utf8_lossy(&response).into_owned(),
        });
        Err(LogsError::Refused {
            action: action.to_string(),
            status,
            // `__type` is the bare name or a shape id (`namespace#Name`).
            kind: error
                .kind
                .rsplit('#')
                .next()
                .unwrap_or_default()
                .to_string(),
            message: error.message,
        })
    }

    /// POSTs a signed JSON request for `target`; returns the answer's status and body.
    async fn post(&self, target: &str, body: String) -> Result<(u16, Bytes), LogsError> {
        let uri = format!("{}/", self.endpoint);
        let host = uri
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let mut request = http::Request::post(&uri)
            .header("host", &host)
            .header("content-type", CONTENT_TYPE)
            .header("x-amz-target", target)
            .body(Full::new(Bytes::from(body.clone())))
            .map_err(|e| self.transport(e.to_string()))?;
        self.sign(&mut request, &uri, &host, target, body.as_bytes())
            .await?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| self.transport(e.to_string()))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.transport(e.to_string()))?
            .to_bytes();
        Ok((status, bytes))
    }

    async fn sign(
        &self,
        request: &mut http::Request<Full<Bytes>>,
        uri: &str,
        host: &str,
        target: &str,
        body: &[u8],
    ) -> Result<(), LogsError> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| LogsError::Signing(e.to_string()))?;
        let identity: Identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("logs")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| LogsError::Signing(e.to_string()))?
            .into();
        let headers = [
            ("host", host),
            ("content-type", CONTENT_TYPE),
            ("x-amz-target", target),
        ];
        let signable =
            SignableRequest::new("POST", uri, headers.into_iter(), SignableBody::Bytes(body))
                .map_err(|e| LogsError::Signing(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| LogsError::Signing(e.to_string()))?
            .into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }

    fn transport(&self, reason: String) -> LogsError {
        LogsError::Transport {
            endpoint: self.endpoint.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::Router;
    use std::sync::{Arc, Mutex};

    /// What the fake Logs endpoint saw: each request's headers and JSON body.
    type Seen = Arc<Mutex<Vec<(HeaderMap, serde_json::Value)>>>;

    /// Serves `answer` (status, body) to every request on a loopback port.
    async fn fake(status: u16, answer: &str) -> (Logs, Seen) {
        let seen: Seen = Arc::default();
        let answer = answer.to_string();
        let record = seen.clone();
        let router = Router::new().route(
            "/",
            post(move |headers: HeaderMap, body: String| async move {
                let json = serde_json::from_str(&body).unwrap_or_default();
                record.lock().expect("not poisoned").push((headers, json));
                (StatusCode::from_u16(status).expect("a status"), answer)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let endpoint = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        (Logs::new(&config(&endpoint)).expect("a client"), seen)
    }

    fn config(endpoint: &str) -> SdkConfig {
        SdkConfig::builder()
            .endpoint_url(endpoint)
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("AKID", "secret", None, None, "test"),
            ))
            .build()
    }

    #[tokio::test]
    async fn sends_a_signed_filter_log_events_call_and_reads_its_page() {
        let (logs, seen) = fake(
            200,
            r#"{"events":[{"message":"one","timestamp":1},{"timestamp":2},{"message":"two"}],"nextToken":"t2","searchedLogStreams":[]}"#,
        )
        .await;
        let page = logs
            .filter_log_events("/aws/lambda/consumer", "processed", Some("t1"))
            .await
            .expect("a page");
        assert_eq!(
            page,
            Page {
                messages: vec!["one".into(), "two".into()],
                next_token: Some("t2".into()),
            }
        );
        let seen = seen.lock().expect("not poisoned");
        let (headers, body) = &seen[0];
        assert_eq!(headers["x-amz-target"], "Logs_20140328.FilterLogEvents");
        assert_eq!(headers["content-type"], CONTENT_TYPE);
        let authorization = headers["authorization"].to_str().expect("ascii");
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKID/")
                && authorization.contains("/eu-west-1/logs/aws4_request")
                && authorization.contains("x-amz-target"),
            "{authorization}"
        );
        assert_eq!(
            body,
            &serde_json::json!({
                "logGroupName": "/aws/lambda/consumer",
                "filterPattern": "processed",
                "nextToken": "t1",
            })
        );
    }

    #[tokio::test]
    async fn a_missing_group_is_its_own_error_whatever_the_type_s_namespace() {
        for kind in [
            "ResourceNotFoundException",
            "com.amazonaws.logs#ResourceNotFoundException",
        ] {
            let answer = format!(
                r#"{{"__type":"{kind}","message":"The specified log group does not exist."}}"#
            );
            let (logs, _) = fake(400, &answer).await;
            let error = logs
                .filter_log_events("/aws/lambda/none", "processed", None)
                .await
                .expect_err("no group");
            assert!(
                matches!(&error, LogsError::GroupNotFound(group) if group == "/aws/lambda/none"),
                "{error:?}"
            );
        }
    }

    #[tokio::test]
    async fn other_refusals_say_what_the_service_said() {
        let (logs, seen) = fake(
            400,
            r#"{"__type":"InvalidParameterException","message":"bad pattern"}"#,
        )
        .await;
        let error = logs
            .filter_log_events("/aws/lambda/consumer", "processed", None)
            .await
            .expect_err("refused");
        assert_eq!(
            error.to_string(),
            "CloudWatch Logs refused FilterLogEvents (400): InvalidParameterException: bad pattern"
        );
        assert_eq!(
            seen.lock().expect("not poisoned").len(),
            1,
            "not tried again"
        );
    }

    #[tokio::test]
    async fn a_transient_failure_is_tried_three_times_then_reported() {
        let (logs, seen) = fake(
            400,
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
        )
        .await;
        let error = logs
            .filter_log_events("/aws/lambda/consumer", "processed", None)
            .await
            .expect_err("throttled throughout");
        assert!(matches!(error, LogsError::Refused { .. }), "{error:?}");
        assert_eq!(seen.lock().expect("not poisoned").len(), 3);
    }

    #[test]
    fn needs_a_plain_http_endpoint() {
        let error = Logs::new(&config("https://logs.eu-west-1.amazonaws.com"))
            .err()
            .expect("refused");
        assert!(error.to_string().contains("http:// endpoint"), "{error}");
    }
}
