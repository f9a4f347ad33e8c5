use super::*;
use proptest::prelude::*;
use serde_json::json;
use std::cell::RefCell;
use std::collections::HashMap;

const QUEUE: &str = "arn:aws:sqs:eu-west-1:123456789012:orders";

/// A fleet deployment's environment: no consumer of its own.
fn fleet_env() -> HashMap<&'static str, String> {
    HashMap::from([
        ("STATE_MACHINE_NAME", "breaker-circuit-breaker".to_owned()),
        ("CIRCUIT_TABLE", "circuits".to_owned()),
        ("EVENT_BUS_NAME", "breakers".to_owned()),
        ("BACKOFF_CAP_SECONDS", "600".to_owned()),
        ("REJITTER_FUNCTION_NAME", "breaker-rejitter".to_owned()),
    ])
}

fn defaults(env: &HashMap<&'static str, String>) -> Defaults {
    Defaults::from_lookup(|k| env.get(k).cloned())
}

fn orders() -> Value {
    json!({
        "Id": "orders-attachment",
        "ConsumerFunctionName": "orders-consumer",
        "QueueArn": QUEUE,
        "AlarmName": "orders-consumer-failing",
    })
}

fn with(mut attachment: Value, key: &str, value: Value) -> Value {
    attachment[key] = value;
    attachment
}

fn attach(attachment: &Value) -> Result<Attachment, AttachmentError> {
    Config::for_attachment(&defaults(&fleet_env()), attachment)
}

#[test]
fn variables_are_every_variable_the_configuration_reads() {
    let read = RefCell::new(Vec::new());
    let env = fleet_env();
    let _ = Config::from_lookup(|name| {
        read.borrow_mut().push(name.to_owned());
        match name {
            "CONSUMER_FUNCTION_NAME" => Some("f".into()),
            "QUEUE_ARN" => Some(QUEUE.into()),
            "ALARM_NAME" => Some("a".into()),
            _ => env.get(name).cloned(),
        }
    });
    let mut read = read.into_inner();
    read.sort();
    read.dedup();
    let mut known: Vec<String> = VARIABLES.iter().map(|v| (*v).to_owned()).collect();
    known.sort();
    assert_eq!(read, known);
    for (_, var) in IDENTITY.iter().chain(SETTINGS) {
        assert!(VARIABLES.contains(var), "{var}");
    }
}

#[test]
fn an_attachment_gets_the_deployment_defaults_and_its_own_consumer() {
    let a = attach(&orders()).expect("valid");
    assert_eq!(a.id, "orders-attachment");
    assert_eq!(a.config.consumer_function, "orders-consumer");
    assert_eq!(a.config.queue_arn, QUEUE);
    assert_eq!(a.config.alarm_name, "orders-consumer-failing");
    // The deployment's own.
    assert_eq!(a.config.state_machine_name, "breaker-circuit-breaker");
    assert_eq!(a.config.circuit_table, "circuits");
    assert_eq!(a.config.event_bus, "breakers");
    assert_eq!(a.config.backoff.cap_seconds, 600);
    assert_eq!(
        a.config.rejitter_function.as_deref(),
        Some("breaker-rejitter")
    );
    // The breaker's defaults where the deployment sets nothing.
    assert_eq!(a.config.backoff.base_seconds, 5);
    assert_eq!(a.config.max_circuits_per_hour, Some(6));
}

#[test]
fn the_attachments_settings_win_and_blank_or_null_means_the_deployments() {
    let a = attach(&json!({
        "Id": "orders",
        "ConsumerFunctionName": "orders-consumer",
        "QueueArn": QUEUE,
        "AlarmName": "orders-alarm",
        "BackoffBaseSeconds": 2,
        "BackoffCapSeconds": "",
        "MaxOpenSeconds": null,
        "GiveUpPolicy": "leave-open",
        "AlarmSignal": "failed-records",
        "AlarmPeriodSeconds": "30",
        "AlarmHangPeriods": 4,
        "SlowStartSeconds": 120,
    }))
    .expect("valid");
    assert_eq!(a.config.backoff.base_seconds, 2);
    assert_eq!(a.config.backoff.cap_seconds, 600);
    assert_eq!(a.config.limits.max_open_seconds, None);
    assert_eq!(a.config.give_up, crate::core::GiveUpPolicy::LeaveOpen);
    assert_eq!(a.config.signal.hang_seconds, 120);
    assert_eq!(a.config.slow_start_seconds, 120);
}

#[test]
fn the_consumer_is_never_inherited_from_the_deployment() {
    // A single-consumer stack upgraded to a fleet keeps its built-in consumer in the
    // environment; another attachment that forgets its own must not get it.
    let mut env = fleet_env();
    env.insert("CONSUMER_FUNCTION_NAME", "built-in".into());
    env.insert("QUEUE_ARN", QUEUE.into());
    env.insert("ALARM_NAME", "built-in-alarm".into());
    for (key, var) in IDENTITY {
        let mut attachment = orders();
        attachment.as_object_mut().expect("object").remove(*key);
        let err = Config::for_attachment(&defaults(&env), &attachment).expect_err(key);
        assert_eq!(
            err,
            AttachmentError::Config {
                id: "orders-attachment".into(),
                keys: vec![*key],
                source: ConfigError::Missing { name: var },
            }
        );
        assert!(err.to_string().contains(key), "{err}");
    }
}

#[test]
fn the_id_is_a_stack_name() {
    let mut no_id = orders();
    no_id.as_object_mut().expect("object").remove("Id");
    assert_eq!(attach(&no_id), Err(AttachmentError::MissingId));
    for bad in [
        json!(""),
        json!("1orders"),
        json!("or ders"),
        json!("a_b"),
        json!(BUILT_IN),
        json!(7),
    ] {
        assert!(
            matches!(
                attach(&with(orders(), "Id", bad.clone())),
                Err(AttachmentError::InvalidId(_))
            ),
            "{bad}"
        );
    }
    let longest = "a".repeat(128);
    assert!(attach(&with(orders(), "Id", json!(longest))).is_ok());
    let too_long = "a".repeat(129);
    assert!(attach(&with(orders(), "Id", json!(too_long))).is_err());
    assert_eq!(
        attach(&json!(["orders"])),
        Err(AttachmentError::NotAnObject)
    );
}

#[test]
fn unknown_and_deployment_wide_settings_are_refused() {
    for key in [
        "BackoffCap",
        "CircuitTable",
        "EventBusName",
        "MetricsNamespace",
        "SettleTimeoutSeconds",
        "MinDelaySeconds",
        "BACKOFF_BASE_SECONDS",
        "backoffBaseSeconds",
    ] {
        match attach(&with(orders(), key, json!("5"))) {
            Err(AttachmentError::UnknownSetting {
                key: got, allowed, ..
            }) => {
                assert_eq!(got, key);
                assert!(allowed.contains("BackoffBaseSeconds"), "{allowed}");
            }
            other => panic!("{key}: {other:?}"),
        }
    }
}

#[test]
fn values_must_be_strings_or_whole_numbers() {
    for (value, expected) in [
        (json!(-1), "a whole number of 0 or more"),
        (json!(1.5), "a whole number of 0 or more"),
        (json!(true), "a string or a whole number"),
        (json!([5]), "a string or a whole number"),
        (json!({"s": 5}), "a string or a whole number"),
    ] {
        let err = attach(&with(orders(), "BackoffBaseSeconds", value.clone())).expect_err("bad");
        assert_eq!(
            err,
            AttachmentError::InvalidValue {
                id: "orders-attachment".into(),
                key: "BackoffBaseSeconds".into(),
                value: value.to_string(),
                expected,
            }
        );
    }
}

#[test]
fn out_of_range_values_are_the_configuration_checks_refusals() {
    let err = attach(&with(orders(), "BackoffBaseSeconds", json!(900))).expect_err("cap 600");
    assert_eq!(
        err,
        AttachmentError::Config {
            id: "orders-attachment".into(),
            keys: vec!["BackoffBaseSeconds", "BackoffCapSeconds"],
            source: ConfigError::BackoffCapBelowBase {
                cap: 600,
                base: 900
            },
        }
    );
    assert_eq!(
        err.to_string(),
        "attachment \"orders-attachment\" (BackoffBaseSeconds, BackoffCapSeconds): \
         BACKOFF_CAP_SECONDS=600 must be at least BACKOFF_BASE_SECONDS=900"
    );
    assert!(matches!(
        attach(&with(orders(), "SlowStartSeconds", json!(3601))),
        Err(AttachmentError::Config {
            source: ConfigError::SlowStartTooLong { .. },
            ..
        })
    ));
    assert!(matches!(
        attach(&with(orders(), "MaxProbeAttempts", json!(4_294_967_296u64))),
        Err(AttachmentError::Config {
            source: ConfigError::InvalidNumber { .. },
            ..
        })
    ));
    assert!(matches!(
        attach(&with(orders(), "EmptyQueuePolicy", json!("health-check"))),
        Err(AttachmentError::Config {
            source: ConfigError::HealthCheckFunctionMissing,
            ..
        })
    ));
    assert!(matches!(
        attach(&with(orders(), "QueueArn", json!("orders"))),
        Err(AttachmentError::Config {
            source: ConfigError::InvalidQueueArn { .. },
            ..
        })
    ));
}

#[test]
fn the_function_is_a_name_not_an_arn() {
    for bad in [
        "arn:aws:lambda:eu-west-1:123456789012:function:orders",
        "orders:live",
        &"f".repeat(65),
    ] {
        assert!(
            matches!(
                attach(&with(orders(), "ConsumerFunctionName", json!(bad))),
                Err(AttachmentError::InvalidFunctionName { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn the_rejitter_is_per_attachment_and_refused_on_a_fifo_queue() {
    let off = attach(&with(orders(), "RejitterEnabled", json!(false))).expect("valid");
    assert_eq!(off.config.rejitter_function, None);
    let on = attach(&with(orders(), "RejitterEnabled", json!("true"))).expect("valid");
    assert_eq!(
        on.config.rejitter_function.as_deref(),
        Some("breaker-rejitter")
    );
    assert!(matches!(
        attach(&with(orders(), "RejitterEnabled", json!("yes"))),
        Err(AttachmentError::InvalidValue { .. })
    ));

    let fifo = "arn:aws:sqs:eu-west-1:123456789012:orders.fifo";
    let fifo_on = with(
        with(orders(), "QueueArn", json!(fifo)),
        "RejitterEnabled",
        json!(true),
    );
    assert_eq!(
        attach(&fifo_on),
        Err(AttachmentError::Config {
            id: "orders-attachment".into(),
            keys: vec!["QueueArn"],
            source: ConfigError::RejitterOnFifoQueue { queue: fifo.into() },
        })
    );
    // A FIFO consumer of a deployment whose default is the rejitter turns it off.
    let fifo_off = with(
        with(orders(), "QueueArn", json!(fifo)),
        "RejitterEnabled",
        json!(false),
    );
    assert!(attach(&fifo_off).is_ok());

    let mut env = fleet_env();
    env.remove("REJITTER_FUNCTION_NAME");
    assert_eq!(
        Config::for_attachment(
            &defaults(&env),
            &with(orders(), "RejitterEnabled", json!(true))
        ),
        Err(AttachmentError::NoRejitter {
            id: "orders-attachment".into()
        })
    );
}

#[test]
fn routing_reads_the_attachment_and_its_event() {
    let event = json!({"detail-type": "CloudWatch Alarm State Change"});
    let input = json!({"attachment": "orders", "event": event});
    assert_eq!(
        route(&input),
        Ok(Routed {
            target: Target::Attachment("orders"),
            event: &event
        })
    );
    // Today's single-consumer inputs: the bare event, or an operator's open.
    let operator = json!({"operator": {"reason": "db", "hold": true}});
    assert_eq!(
        route(&operator),
        Ok(Routed {
            target: Target::BuiltIn,
            event: &operator
        })
    );
    assert_eq!(route(&event).map(|r| r.target), Ok(Target::BuiltIn));

    assert_eq!(
        route(&json!({"attachment": "orders"})),
        Err(RouteError::MissingEvent("orders".into()))
    );
    assert_eq!(
        route(&json!({"attachment": "orders", "event": null})),
        Err(RouteError::MissingEvent("orders".into()))
    );
    assert_eq!(
        route(&json!({"attachment": "orders", "event": {}, "QueueArn": QUEUE})),
        Err(RouteError::UnexpectedField("QueueArn".into()))
    );
    for bad in [json!(""), json!(3), json!(null), json!("or ders")] {
        assert!(
            matches!(
                route(&json!({"attachment": bad, "event": {}})),
                Err(RouteError::InvalidAttachment(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn an_alarm_guards_the_attachments_that_name_it_in_their_account_and_region() {
    let orders = attach(&orders()).expect("valid");
    let payments = attach(&json!({
        "Id": "payments",
        "ConsumerFunctionName": "payments-consumer",
        "QueueArn": "arn:aws:sqs:eu-west-1:123456789012:payments",
        "AlarmName": "payments-failing",
    }))
    .expect("valid");
    // A second consumer of the orders queue sharing its alarm: its own circuit, same alarm.
    let audit = attach(&json!({
        "Id": "audit",
        "ConsumerFunctionName": "audit-consumer",
        "QueueArn": QUEUE,
        "AlarmName": "orders-consumer-failing",
    }))
    .expect("valid");
    let fleet = [orders.clone(), payments.clone(), audit.clone()];
    let event = |name: &str, region: &str| json!({"account": "123456789012", "region": region, "detail": {"alarmName": name}});
    let ids = |found: Vec<&Attachment>| found.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(attachments_for_alarm(
            &fleet,
            &event("orders-consumer-failing", "eu-west-1")
        )),
        ["orders-attachment", "audit"]
    );
    assert_eq!(
        ids(attachments_for_alarm(
            &fleet,
            &event("payments-failing", "eu-west-1")
        )),
        ["payments"]
    );
    assert!(attachments_for_alarm(&fleet, &event("payments-failing", "us-east-1")).is_empty());
    assert!(attachments_for_alarm(&fleet, &event("other", "eu-west-1")).is_empty());
    assert!(attachments_for_alarm(&fleet, &json!({})).is_empty());
}

#[test]
fn overlaps_name_the_same_consumer_and_the_signals_another_consumer_raises() {
    let consumer = |id: &str, function: &str, queue: &str, signal: &str| {
        attach(&json!({
            "Id": id,
            "ConsumerFunctionName": function,
            "QueueArn": format!("arn:aws:sqs:eu-west-1:123456789012:{queue}"),
            "AlarmName": format!("{id}-alarm"),
            "AlarmSignal": signal,
        }))
        .expect("valid")
    };
    let fleet = [
        consumer("orders", "orders-fn", "orders", "any"),
        consumer("audit", "audit-fn", "orders", "error-share"),
        consumer("refunds", "orders-fn", "refunds", "failed-records"),
        consumer("payments", "payments-fn", "payments", "any"),
    ];
    // Shares the queue with audit and the function with refunds; `any` reads both.
    assert_eq!(
        overlaps(&fleet, &fleet[0]),
        [
            Overlap::SharedQueueSignal { other: "audit" },
            Overlap::SharedFunctionSignal { other: "refunds" }
        ]
    );
    // The per-consumer signals: error-share on a shared queue, failed-records on a
    // shared function.
    assert!(overlaps(&fleet, &fleet[1]).is_empty());
    assert!(overlaps(&fleet, &fleet[2]).is_empty());
    assert!(overlaps(&fleet, &fleet[3]).is_empty());
    // A second attachment of orders' own mapping; an update of orders itself is not one.
    let again = consumer("orders-again", "orders-fn", "orders", "errors");
    assert_eq!(
        overlaps(&fleet, &again),
        [
            Overlap::SameConsumer { other: "orders" },
            Overlap::SharedFunctionSignal { other: "refunds" }
        ]
    );
    let update = consumer("orders", "orders-fn", "orders", "errors");
    assert_eq!(
        overlaps(&fleet, &update),
        [Overlap::SharedFunctionSignal { other: "refunds" }]
    );
    // An alarm of one's own: its metrics are unknown, only the same mapping is certain.
    let custom = consumer("mine", "orders-fn", "orders", "custom");
    assert_eq!(
        overlaps(&fleet, &custom),
        [Overlap::SameConsumer { other: "orders" }]
    );
}

/// The settings, each with a value in its valid range, as strings or numbers.
fn setting_value() -> impl Strategy<Value = (&'static str, &'static str, Value)> {
    let numeric = |key: &'static str, var: &'static str, range: std::ops::RangeInclusive<u32>| {
        (range, any::<bool>()).prop_map(move |(n, as_text)| {
            let v = if as_text {
                json!(n.to_string())
            } else {
                json!(n)
            };
            (key, var, v)
        })
    };
    prop_oneof![
        numeric("BackoffBaseSeconds", "BACKOFF_BASE_SECONDS", 1..=600),
        numeric("MaxProbeAttempts", "MAX_PROBE_ATTEMPTS", 0..=1000),
        numeric("MaxOpenSeconds", "MAX_OPEN_SECONDS", 0..=86_400),
        numeric(
            "RetentionMarginSeconds",
            "RETENTION_MARGIN_SECONDS",
            0..=1_209_600
        ),
        numeric("MaxCircuitsPerHour", "MAX_CIRCUITS_PER_HOUR", 0..=1000),
        numeric("SlowStartSeconds", "SLOW_START_SECONDS", 0..=3600),
        numeric("SlowStartConcurrency", "SLOW_START_CONCURRENCY", 2..=1000),
        numeric("AlarmFailurePercent", "ALARM_FAILURE_PERCENT", 1..=100),
        numeric("AlarmPeriodSeconds", "ALARM_PERIOD_SECONDS", 10..=3600),
        numeric("AlarmHangPeriods", "ALARM_HANG_PERIODS", 1..=100),
        numeric("RejitterMaxSeconds", "REJITTER_MAX_SECONDS", 30..=86_400),
        prop::sample::select(vec!["close", "wait"]).prop_map(|p| (
            "EmptyQueuePolicy",
            "EMPTY_QUEUE_POLICY",
            json!(p)
        )),
        prop::sample::select(vec!["restore", "leave-open"]).prop_map(|p| (
            "GiveUpPolicy",
            "GIVE_UP_POLICY",
            json!(p)
        )),
        prop::sample::select(vec!["any", "failed-records", "error-share", "errors"])
            .prop_map(|s| ("AlarmSignal", "ALARM_SIGNAL", json!(s))),
    ]
}

proptest! {
    /// An attachment is the single-consumer stack it stands for: its settings over the
    /// deployment's environment give the configuration that environment, overlaid with
    /// them, gives today.
    #[test]
    fn an_attachment_is_the_single_consumer_stack_with_its_settings(
        settings in prop::collection::vec(setting_value(), 0..8)
    ) {
        let mut attachment = orders();
        let mut env = fleet_env();
        env.insert("CONSUMER_FUNCTION_NAME", "orders-consumer".into());
        env.insert("QUEUE_ARN", QUEUE.into());
        env.insert("ALARM_NAME", "orders-consumer-failing".into());
        for (key, var, value) in &settings {
            attachment[*key] = value.clone();
            let text = value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
            env.insert(var, text);
        }
        let single = Config::from_lookup(|k| env.get(k).cloned());
        let attached = attach(&attachment);
        match (single, attached) {
            (Ok(config), Ok(a)) => prop_assert_eq!(config, a.config),
            (Err(e), Err(AttachmentError::Config { source, .. })) => prop_assert_eq!(e, source),
            (single, attached) => prop_assert!(false, "{single:?} vs {attached:?}"),
        }
    }

    /// Every key outside the attachment's own is refused, whatever its value.
    #[test]
    fn only_the_attachments_keys_are_accepted(key in "[A-Za-z_]{1,24}", n in 0u32..100) {
        let known = [ID, REJITTER_ENABLED]
            .into_iter()
            .chain(IDENTITY.iter().chain(SETTINGS).map(|(k, _)| *k))
            .any(|k| k == key);
        let result = attach(&with(orders(), &key, json!(n.to_string())));
        if !known {
            let is_unknown = matches!(result, Err(AttachmentError::UnknownSetting { .. }));
            prop_assert!(is_unknown, "{:?}", result);
        }
    }

    /// Routing never panics, and an attachment's input always routes to that attachment.
    #[test]
    fn routing_an_attachments_input(id in "[A-Za-z][A-Za-z0-9-]{0,40}", n in any::<u32>()) {
        prop_assume!(id != BUILT_IN);
        let event = json!({"n": n});
        let input = json!({"attachment": id, "event": event});
        let routed = route(&input);
        prop_assert_eq!(routed, Ok(Routed { target: Target::Attachment(&id), event: &event }));
    }
}
