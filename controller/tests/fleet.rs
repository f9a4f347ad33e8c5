//! One deployment, many consumers: an attachment's input opens its own consumer's circuit
//! with its own settings, every later step (and the failsafe and the recovery) runs with the
//! configuration the circuit recorded, and the built-in consumer is never touched.
//!
//! The built-in consumer here is another function on another queue with another alarm; the
//! attachment is the consumer every support rule matches (`FUNCTION`, `QUEUE_ARN`, `ALARM`),
//! so an AWS call about the wrong consumer finds no rule and fails the test.

use crate::support;

use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::scan::ScanOutput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sfn::types::ExecutionStatus;
use aws_smithy_mocks::{mock, Rule};
use controller::adapters::attachments::Attachments;
use controller::adapters::Clients;
use controller::circuit::{Circuit, CircuitAttachment, OpenStatus};
use controller::core::attachment::Defaults;
use controller::core::{Backoff, Config, Next};
use controller::error::StepError;
use controller::steps::fleet::BoxFuture;
use controller::steps::{self, Context, Fleet, Request, Roles};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use support::*;

const ATTACHMENTS: &str = "breaker-attachments";
const ID: &str = "orders-attachment";
const ROLE: &str = "arn:aws:iam::123456789012:role/sqs-circuit-breaker/breaker/orders-attachment";
/// The attachment's backoff: not the deployment's (`BACKOFF_BASE`, `BACKOFF_CAP`).
const ITS_BASE: u32 = 30;
const ITS_CAP: u32 = 600;

/// The deployment's environment: the test configuration's, with a built-in consumer that is
/// not the attachment's.
fn deployment_env() -> Vec<(&'static str, String)> {
    vec![
        ("CONSUMER_FUNCTION_NAME", "builtin-consumer".into()),
        (
            "QUEUE_ARN",
            "arn:aws:sqs:us-east-1:123456789012:builtin".into(),
        ),
        ("ALARM_NAME", "builtin-errors".into()),
        ("STATE_MACHINE_NAME", STATE_MACHINE.into()),
        ("CIRCUIT_TABLE", TABLE.into()),
        ("EVENT_BUS_NAME", EVENT_BUS.into()),
        ("METRICS_NAMESPACE", NAMESPACE.into()),
        ("BACKOFF_BASE_SECONDS", BACKOFF_BASE.to_string()),
        ("BACKOFF_CAP_SECONDS", BACKOFF_CAP.to_string()),
        ("RETENTION_MARGIN_SECONDS", MARGIN_SECONDS.to_string()),
        ("SETTLE_TIMEOUT_SECONDS", "60".into()),
        ("ALARM_SIGNAL", "errors".into()),
    ]
}

fn lookup(name: &str) -> Option<String> {
    deployment_env()
        .into_iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn builtin() -> Config {
    Config::from_lookup(lookup).expect("the built-in consumer is valid")
}

/// The attachment as its item holds it: the support rules' consumer, its own backoff.
fn attachment(role_arn: Option<&str>) -> CircuitAttachment {
    CircuitAttachment {
        id: ID.into(),
        settings: json!({
            "Id": ID,
            "ConsumerFunctionName": FUNCTION,
            "QueueArn": QUEUE_ARN,
            "AlarmName": ALARM,
            "BackoffBaseSeconds": ITS_BASE,
            "BackoffCapSeconds": ITS_CAP.to_string(),
        }),
        role_arn: role_arn.map(str::to_owned),
    }
}

fn input() -> Value {
    json!({"attachment": ID, "event": alarm_event(ALARM, "ALARM")})
}

/// GetItem of `id` in the attachments table, answering `found`.
fn get_attachment(id: &'static str, found: Option<CircuitAttachment>) -> Rule {
    mock!(aws_sdk_dynamodb::Client::get_item)
        .match_requests(move |r| {
            r.table_name() == Some(ATTACHMENTS)
                && r.key().and_then(|k| k.get("id")) == Some(&AttributeValue::S(id.into()))
                && r.consistent_read() == Some(true)
        })
        .then_output(move || {
            GetItemOutput::builder()
                .set_item(
                    found
                        .as_ref()
                        .map(controller::adapters::attachments::item_attributes),
                )
                .build()
        })
}

/// The acquire, recording the attachment with the mapping's snapshot.
fn acquire_recording_attachment() -> (Rule, Arc<Mutex<Vec<Value>>>) {
    let stored = Arc::new(Mutex::new(Vec::new()));
    let seen = stored.clone();
    let rule = mock!(aws_sdk_dynamodb::Client::update_item)
        .match_requests(move |r| {
            let snapshot = r
                .expression_attribute_values()
                .and_then(|v| v.get(":snapshot"))
                .and_then(|v| v.as_s().ok())
                .and_then(|s| serde_json::from_str::<Value>(s).ok());
            let ours = r.table_name() == Some(TABLE)
                && r.condition_expression()
                    == Some("attribute_not_exists(mapping_id) OR #state = :closed");
            if let (true, Some(snapshot)) = (ours, snapshot) {
                seen.lock().unwrap().push(snapshot);
                true
            } else {
                false
            }
        })
        .then_output(|| UpdateItemOutput::builder().build());
    (rule, stored)
}

/// The fleet of a deployment with a built-in consumer and an attachments table.
fn fleet() -> Fleet {
    Fleet {
        defaults: Defaults::from_lookup(lookup),
        attachments: None,
        fleet_only: false,
        roles: None,
        own: None,
    }
}

fn with_table(ctx: Context) -> Context {
    let attachments = Some(Attachments {
        dynamodb: ctx.clients.dynamodb.clone(),
        table: ATTACHMENTS.into(),
    });
    Context {
        fleet: Fleet {
            attachments,
            ..fleet()
        },
        ..ctx
    }
}

/// The open step's rules, answering as on the happy path for the support rules' consumer.
struct Open {
    get_attachment: Rule,
    acquire: Rule,
    stored: Arc<Mutex<Vec<Value>>>,
    list: Rule,
    queue_url: Rule,
    queue_attributes: Rule,
    get_item: Rule,
    describe_self: Rule,
    disable: Rule,
    get_mapping: Rule,
    function_configuration: Rule,
    oldest_age: Rule,
    put_event: Rule,
    put_metric: Rule,
}

impl Open {
    fn new(found: Option<CircuitAttachment>) -> Open {
        let (acquire, stored) = acquire_recording_attachment();
        Open {
            get_attachment: get_attachment(ID, found),
            acquire,
            stored,
            list: list_mappings(&["Enabled"]),
            queue_url: queue_url(),
            queue_attributes: queue_attributes(),
            get_item: get_item(None),
            describe_self: describe_execution(EXECUTION, ExecutionStatus::Running),
            disable: disable_mapping(),
            get_mapping: get_mapping(&["Enabled", "Disabling", "Disabled"]),
            function_configuration: function_configuration(),
            oldest_age: oldest_age(&[]),
            put_event: put_event("Circuit Opened"),
            put_metric: put_metric("CircuitOpened"),
        }
    }

    /// The controller's own rules: the tables, the executions, the bus and the metrics.
    fn own(&self) -> Mocks {
        Mocks {
            cloudwatch: vec![self.put_metric.clone()],
            eventbridge: vec![self.put_event.clone()],
            dynamodb: vec![
                self.get_attachment.clone(),
                self.get_item.clone(),
                self.acquire.clone(),
            ],
            sfn: vec![self.describe_self.clone()],
            ..Mocks::default()
        }
    }

    /// The consumer's rules: its mapping, function, queue and the queue's metrics.
    fn consumer(&self) -> Mocks {
        Mocks {
            sqs: vec![self.queue_url.clone(), self.queue_attributes.clone()],
            lambda: vec![
                self.list.clone(),
                self.disable.clone(),
                self.get_mapping.clone(),
                self.function_configuration.clone(),
            ],
            cloudwatch: vec![self.oldest_age.clone()],
            ..Mocks::default()
        }
    }

    /// Both in one set of clients: an attachment without a role of its own.
    fn mocks(&self) -> Mocks {
        let (own, consumer) = (self.own(), self.consumer());
        Mocks {
            sqs: consumer.sqs,
            lambda: consumer.lambda,
            cloudwatch: [own.cloudwatch, consumer.cloudwatch].concat(),
            eventbridge: own.eventbridge,
            dynamodb: own.dynamodb,
            sfn: own.sfn,
        }
    }

    #[track_caller]
    fn assert_opened(&self) {
        assert_only(
            &[
                ("get_attachment", &self.get_attachment),
                ("acquire", &self.acquire),
                ("list", &self.list),
                ("queue_url", &self.queue_url),
                ("queue_attributes", &self.queue_attributes),
                ("get_item", &self.get_item),
                ("describe_self", &self.describe_self),
                ("disable", &self.disable),
                ("get_mapping", &self.get_mapping),
                ("function_configuration", &self.function_configuration),
                ("oldest_age", &self.oldest_age),
                ("put_event", &self.put_event),
                ("put_metric", &self.put_metric),
            ],
            &[
                ("get_attachment", 1),
                ("acquire", 1),
                ("list", 1),
                ("queue_url", 1),
                ("queue_attributes", 1),
                ("get_item", 1),
                ("describe_self", 2),
                ("disable", 1),
                ("get_mapping", 3),
                ("function_configuration", 1),
                ("oldest_age", 1),
                ("put_event", 1),
                ("put_metric", 1),
            ],
        );
    }
}

fn open_request(input: Value) -> Request {
    Request::parse(json!({"step": "open", "event": input, "execution": EXECUTION}))
        .expect("an open request")
        .0
}

async fn run(ctx: &Context, request: Request) -> Result<Value, StepError> {
    steps::run(ctx, request, 0).await
}

fn circuit_of(output: Value) -> Circuit {
    serde_json::from_value(output).expect("a circuit")
}

#[tokio::test]
async fn an_attachments_input_opens_its_consumer_with_its_settings() {
    let open = Open::new(Some(attachment(None)));
    let ctx = with_table(open.mocks().context(builtin()));

    let circuit = circuit_of(run(&ctx, open_request(input())).await.expect("opened"));

    open.assert_opened();
    assert_eq!(circuit.status, OpenStatus::Opened);
    assert_eq!(circuit.attachment, Some(attachment(None)));
    assert_eq!(circuit.queue_arn, QUEUE_ARN);
    let its_backoff = Backoff {
        base_seconds: ITS_BASE,
        cap_seconds: ITS_CAP,
    };
    assert_eq!(circuit.wait_seconds, its_backoff.delay(0, RANDOM));
    assert_eq!(circuit.backoff_ceiling_seconds, its_backoff.ceiling(0));
    assert_ne!(
        circuit.wait_seconds,
        builtin().backoff.delay(0, RANDOM),
        "the deployment's backoff would draw the same wait"
    );
    // The circuit item records the attachment next to the snapshot.
    let stored = open.stored.lock().unwrap().clone();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["uuid"], UUID);
    assert_eq!(stored[0]["attachment"]["id"], ID);
    assert_eq!(
        stored[0]["attachment"]["settings"]["BackoffBaseSeconds"],
        ITS_BASE
    );
}

#[tokio::test]
async fn an_attachments_consumer_calls_run_under_its_role() {
    /// Hands out the consumer's clients for the attachment's role, and counts the asks.
    struct TestRoles {
        consumer: Clients,
        asked: Mutex<Vec<String>>,
    }
    impl Roles for TestRoles {
        fn clients<'a>(
            &'a self,
            role_arn: &'a str,
            own: &'a Clients,
        ) -> BoxFuture<'a, Result<Clients, StepError>> {
            self.asked.lock().unwrap().push(role_arn.to_string());
            let clients = Clients {
                sqs: self.consumer.sqs.clone(),
                lambda: self.consumer.lambda.clone(),
                cloudwatch: self.consumer.cloudwatch.clone(),
                ..own.clone()
            };
            Box::pin(async move { Ok(clients) })
        }
    }

    let open = Open::new(Some(attachment(Some(ROLE))));
    let roles = Arc::new(TestRoles {
        consumer: open.consumer().clients(),
        asked: Mutex::new(Vec::new()),
    });
    // The controller's own clients know none of the consumer's calls, and the role's none
    // of the breaker's tables, executions, events or metrics.
    let ctx = with_table(open.own().context(builtin()));
    let ctx = Context {
        fleet: Fleet {
            roles: Some(roles.clone()),
            ..ctx.fleet.clone()
        },
        ..ctx
    };

    let circuit = circuit_of(run(&ctx, open_request(input())).await.expect("opened"));

    open.assert_opened();
    assert_eq!(*roles.asked.lock().unwrap(), [ROLE]);
    assert_eq!(circuit.attachment, Some(attachment(Some(ROLE))));

    // Without a way to assume roles, nothing is touched beyond the attachment's item.
    let open = Open::new(Some(attachment(Some(ROLE))));
    let ctx = with_table(open.mocks().context(builtin()));
    let err = run(&ctx, open_request(input()))
        .await
        .expect_err("no roles");
    assert!(
        matches!(&err, StepError::Config(m) if m.contains(ROLE)),
        "{err}"
    );
}

fn routes_to_it(input: &Value) -> bool {
    input["attachment"] == ID && input["event"].is_object()
}

#[tokio::test]
async fn inputs_that_name_no_usable_attachment_touch_nothing_and_say_why() {
    // (input, the table's answer, with a table, fleet-only, what the refusal says)
    let unknown = (input(), None, true, false, "not registered");
    let no_table = (
        input(),
        Some(attachment(None)),
        false,
        false,
        "ATTACHMENTS_TABLE",
    );
    let malformed = (
        json!({"attachment": "orders attachment", "event": {}}),
        None,
        true,
        false,
        "not an attachment id",
    );
    let no_event = (json!({"attachment": ID}), None, true, false, "no event");
    let fleet_only = (
        alarm_event(ALARM, "ALARM"),
        None,
        true,
        true,
        "no built-in consumer",
    );
    // The event is checked against the attachment's alarm, not the built-in consumer's.
    let not_its_alarm = (
        json!({"attachment": ID, "event": alarm_event("builtin-errors", "ALARM")}),
        Some(attachment(None)),
        true,
        false,
        "do not name the breaker's alarm arn:aws:cloudwatch:us-east-1:123456789012:alarm:orders-consumer-errors",
    );
    for (input, found, table, fleet_only, says) in [
        unknown,
        no_table,
        malformed,
        no_event,
        fleet_only,
        not_its_alarm,
    ] {
        let get = get_attachment(ID, found);
        // Only the attachments table may be read: any other call finds no rule.
        let ctx = Mocks {
            dynamodb: vec![get.clone()],
            ..Mocks::default()
        }
        .context(builtin());
        let ctx = if table { with_table(ctx) } else { ctx };
        let ctx = Context {
            fleet: Fleet {
                fleet_only,
                ..ctx.fleet.clone()
            },
            ..ctx
        };
        let err = run(&ctx, open_request(input.clone()))
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, StepError::InvalidEvent(m) if m.contains(says)),
            "{input}: {err}"
        );
        // The attachment's item is read only for a well-formed input naming it, with a table.
        let reads = usize::from(table && routes_to_it(&input));
        assert_eq!(get.num_calls(), reads, "{input}");
    }
}

/// A circuit opened for the attachment, one probe in.
fn attached_circuit() -> Circuit {
    Circuit {
        attachment: Some(attachment(None)),
        ..circuit()
    }
}

#[tokio::test]
async fn later_steps_use_the_attachments_consumer_and_settings_without_reading_the_table() {
    // Backoff: the attachment's own backoff, not the deployment's.
    let ctx = with_table(Mocks::default().context(builtin()));
    let circuit = Circuit {
        next: Some(Next::Backoff),
        ..attached_circuit()
    };
    let request = Request::Backoff {
        circuit: circuit.clone(),
    };
    let after = circuit_of(run(&ctx, request).await.expect("backed off"));
    let its = Backoff {
        base_seconds: ITS_BASE,
        cap_seconds: ITS_CAP,
    };
    assert_eq!(after.wait_seconds, its.delay(1, RANDOM));
    assert_eq!(after.backoff_ceiling_seconds, its.ceiling(1));
    assert_eq!(after.attachment, circuit.attachment, "carried on");

    // Close: the attachment's mapping given back, its alarm re-armed, its consumer in the
    // event; the attachments table has no rule, so a read of it would fail.
    let ending = Ending::close();
    let ctx = with_table(ending.mocks().context(builtin()));
    let request = Request::Close {
        circuit: Circuit {
            next: Some(Next::Close),
            ..attached_circuit()
        },
    };
    let closed = circuit_of(run(&ctx, request).await.expect("closed"));
    ending.assert_calls(&ended(3, 1));
    assert_eq!(closed.attachment, Some(attachment(None)));

    // A circuit that names no attachment, in a deployment with no built-in consumer, is
    // refused before any call.
    let ctx = with_table(Mocks::default().context(builtin()));
    let ctx = Context {
        fleet: Fleet {
            fleet_only: true,
            ..ctx.fleet.clone()
        },
        ..ctx
    };
    let err = run(&ctx, Request::Close { circuit: healthy() })
        .await
        .expect_err("no consumer");
    assert!(
        matches!(&err, StepError::Config(m) if m.contains("no built-in consumer")),
        "{err}"
    );
}

/// The circuit item of the attachment's circuit, as the acquire wrote it.
fn attached_item(owner: &str) -> std::collections::HashMap<String, AttributeValue> {
    item_of(owner, attachment(None))
}

fn item_of(
    owner: &str,
    attachment: CircuitAttachment,
) -> std::collections::HashMap<String, AttributeValue> {
    let mut attributes = item("OPEN", owner).attributes();
    let mut stored = serde_json::to_value(snapshot("Enabled")).expect("a snapshot");
    stored["attachment"] = serde_json::to_value(attachment).expect("an attachment");
    attributes.insert(
        "mapping_snapshot".into(),
        AttributeValue::S(stored.to_string()),
    );
    attributes
}

/// The Scan for the open circuits of the ended execution (or its recovery).
fn scan_attached(or_owner: String) -> Rule {
    mock!(aws_sdk_dynamodb::Client::scan)
        .match_requests(move |r| {
            r.table_name() == Some(TABLE)
                && r.expression_attribute_values()
                    .and_then(|v| v.get(":or_me"))
                    == Some(&AttributeValue::S(or_owner.clone()))
        })
        .then_output(|| {
            ScanOutput::builder()
                .items(attached_item(EXECUTION))
                .count(1)
                .build()
        })
}

/// The recovery of the aborted `EXECUTION` gives its attached consumer back: the circuit
/// taken over, the mapping enabled, the circuit finished, the alarm reset, the event and
/// metric sent.
async fn recovers_and_gives_back(ending: &Ending) {
    let ctx = with_table(ending.mocks().context(builtin()));
    let request = Request::parse(json!({
        "detail-type": "Step Functions Execution Status Change",
        "detail": {"executionArn": EXECUTION, "status": "ABORTED"}
    }))
    .expect("a recovery")
    .0;
    let out = run(&ctx, request).await.expect("recovered");
    assert_eq!(out, json!({"recovered": [UUID]}));
    ending.assert_calls(&[
        ("scan", 1),
        ("describe", 1),
        ("take_over", 1),
        ("get_mapping", 3),
        ("enable", 1),
        ("finish", 1),
        ("reset_alarm", 1),
        ("put_event", 1),
        ("put_metric", 1),
    ]);
}

#[tokio::test]
async fn a_detached_attachments_circuit_is_recovered_and_its_consumer_given_back() {
    // The attachment's item is gone (no rule for the attachments table at all): the
    // recovery rebuilds its consumer from the circuit item.
    let ending = Ending {
        scan: scan_attached(recovery_owner(EXECUTION)),
        ..Ending::recovered()
    };
    recovers_and_gives_back(&ending).await;

    // The failsafe, likewise, in a fleet-only deployment.
    let ending = Ending {
        scan: scan_attached(EXECUTION.to_string()),
        ..Ending::gave_up()
    };
    let ctx = with_table(ending.mocks().context(builtin()));
    let ctx = Context {
        fleet: Fleet {
            fleet_only: true,
            ..ctx.fleet.clone()
        },
        ..ctx
    };
    let request = Request::parse(json!({
        "step": "failsafe", "execution": EXECUTION, "error": {"Error": "AwsError", "Cause": "denied"}
    }))
    .expect("a failsafe")
    .0;
    let out = run(&ctx, request).await.expect("failsafe");
    assert_eq!(out["restored"], true);
    ending.assert_calls(&[
        ("scan", 1),
        ("get_mapping", 3),
        ("enable", 1),
        ("finish", 1),
        ("reset_alarm", 1),
        ("put_event", 1),
        ("put_metric", 1),
    ]);
}

#[tokio::test]
async fn a_circuit_whose_settings_the_deployment_now_refuses_is_still_given_back() {
    // Opened with the rejitter on; the deployment has none now (its rejitter was removed
    // mid-outage), so the recorded settings fail the check: the recovery gives the consumer
    // back under the deployment's settings, with the rejitter off.
    let mut changed = attachment(None);
    changed.settings["RejitterEnabled"] = json!("true");
    assert!(
        controller::core::Config::for_attachment(&Fleet::default().defaults, &changed.settings)
            .is_err(),
        "the deployment refuses the recorded settings"
    );
    let scan = mock!(aws_sdk_dynamodb::Client::scan)
        .match_requests(|r| r.table_name() == Some(TABLE))
        .then_output(move || {
            ScanOutput::builder()
                .items(item_of(EXECUTION, changed.clone()))
                .count(1)
                .build()
        });
    let ending = Ending {
        scan,
        ..Ending::recovered()
    };
    recovers_and_gives_back(&ending).await;
}

fn table(mocks: &Mocks) -> Attachments {
    Attachments {
        dynamodb: mocks.clients().dynamodb,
        table: ATTACHMENTS.into(),
    }
}

#[tokio::test]
async fn a_registration_never_replaces_an_item_and_an_update_only_its_own() {
    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use controller::adapters::attachments::{Put, PutMode};
    let refused = |condition: &'static str| {
        mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(move |r| {
                r.table_name() == Some(ATTACHMENTS)
                    && r.condition_expression() == Some(condition)
                    && r.item().and_then(|i| i.get("id")) == Some(&AttributeValue::S(ID.into()))
            })
            .then_error(|| {
                PutItemError::ConditionalCheckFailedException(
                    ConditionalCheckFailedException::builder()
                        .meta(
                            aws_sdk_dynamodb::error::ErrorMetadata::builder()
                                .code("ConditionalCheckFailedException")
                                .build(),
                        )
                        .build(),
                )
            })
    };
    let register = refused("attribute_not_exists(id)");
    let update = refused("attribute_exists(id)");
    let mocks = Mocks {
        dynamodb: vec![register.clone(), update.clone()],
        ..Mocks::default()
    };
    let attachments = table(&mocks);
    let ours = attachment(Some(ROLE));
    assert_eq!(
        attachments
            .put(&ours, PutMode::Register)
            .await
            .expect("answered"),
        Put::AlreadyRegistered
    );
    assert_eq!(
        attachments
            .put(&ours, PutMode::Update)
            .await
            .expect("answered"),
        Put::NotRegistered
    );
    assert_eq!((register.num_calls(), update.num_calls()), (1, 1));

    // Written: the item reads back as the same attachment.
    let written = Arc::new(Mutex::new(None));
    let seen = written.clone();
    let put = mock!(aws_sdk_dynamodb::Client::put_item)
        .match_requests(move |r| {
            *seen.lock().unwrap() = r.item().cloned();
            r.condition_expression() == Some("attribute_not_exists(id)")
        })
        .then_output(|| PutItemOutput::builder().build());
    let mocks = Mocks {
        dynamodb: vec![put],
        ..Mocks::default()
    };
    assert_eq!(
        table(&mocks)
            .put(&ours, PutMode::Register)
            .await
            .expect("written"),
        Put::Written
    );
    let item = written.lock().unwrap().clone().expect("an item");
    assert_eq!(
        controller::adapters::attachments::attachment_of(&item),
        Ok(ours)
    );
}

#[tokio::test]
async fn the_fleet_is_listed_page_by_page_and_an_item_deleted_by_id() {
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
    use controller::adapters::attachments::item_attributes;
    let payments = CircuitAttachment {
        id: "payments".into(),
        settings: json!({"Id": "payments"}),
        role_arn: None,
    };
    let key = |id: &str| {
        std::collections::HashMap::from([("id".to_string(), AttributeValue::S(id.into()))])
    };
    let (first, second) = (attachment(None), payments.clone());
    let scan = mock!(aws_sdk_dynamodb::Client::scan)
        .match_requests(|r| r.table_name() == Some(ATTACHMENTS))
        .sequence()
        .output(move || {
            ScanOutput::builder()
                .items(item_attributes(&first))
                .last_evaluated_key("id", AttributeValue::S(ID.into()))
                .build()
        })
        .output(move || {
            ScanOutput::builder()
                .items(item_attributes(&second))
                .build()
        })
        .build();
    let delete = mock!(aws_sdk_dynamodb::Client::delete_item)
        .match_requests(move |r| r.table_name() == Some(ATTACHMENTS) && r.key() == Some(&key(ID)))
        .then_output(|| DeleteItemOutput::builder().build());
    let mocks = Mocks {
        dynamodb: vec![scan.clone(), delete.clone()],
        ..Mocks::default()
    };
    let attachments = table(&mocks);
    assert_eq!(
        attachments.list().await.expect("listed"),
        [attachment(None), payments]
    );
    assert_eq!(scan.num_calls(), 2);
    attachments.delete(ID).await.expect("deleted");
    assert_eq!(delete.num_calls(), 1);
}

#[test]
fn a_built_in_circuit_reads_and_writes_as_before() {
    // No `attachment` in the built-in consumer's circuit, and an older circuit parses.
    let written = serde_json::to_value(circuit()).expect("serialised");
    assert!(written.get("attachment").is_none(), "{written}");
    let read: Circuit = serde_json::from_value(written).expect("parsed");
    assert_eq!(read, circuit());
    let attached = serde_json::to_value(attached_circuit()).expect("serialised");
    assert_eq!(attached["attachment"]["id"], ID);
    assert_eq!(
        serde_json::from_value::<Circuit>(attached).expect("parsed"),
        attached_circuit()
    );
}
