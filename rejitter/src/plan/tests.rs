use super::*;
use crate::attributes::{AttributeValue, MARKER, MAX_MESSAGE_ATTRIBUTES, TRACE_HEADER};
use crate::size::{MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, SQS_MAX_MESSAGE_BYTES};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessageAttribute};
use proptest::prelude::*;
use serde_json::json;

const PASS: &str = "pass-7";

/// The limit of a queue with the default (and largest) `MaximumMessageSize`, 1 MiB.
const MAX_MESSAGE_BYTES: usize = SQS_MAX_MESSAGE_BYTES;

/// A queue whose `MaximumMessageSize` is the old 256 KiB.
const SMALL_QUEUE: usize = 262_144;

/// [`plan`] for a queue of the default 1 MiB limit.
fn plan(
    records: &[SqsMessage],
    range: &DelayRange,
    pass: &str,
    draw: impl FnMut() -> f64,
) -> (Vec<Vec<Outgoing>>, Vec<Rejected>) {
    super::plan(records, range, pass, MAX_MESSAGE_BYTES, draw)
}

fn full_range() -> DelayRange {
    DelayRange::new(0, 900).unwrap()
}

fn message(id: Option<&str>, body: Option<&str>) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = id.map(str::to_owned);
    m.body = body.map(str::to_owned);
    m
}

fn string_attribute(data_type: Option<&str>, value: &str) -> SqsMessageAttribute {
    let mut a = SqsMessageAttribute::default();
    a.data_type = data_type.map(str::to_owned);
    a.string_value = Some(value.to_owned());
    a
}

fn marker(pass: &str) -> OutAttribute {
    OutAttribute {
        data_type: "String".to_owned(),
        value: AttributeValue::String(pass.to_owned()),
    }
}

/// Draws 0.0, 0.1, 0.2, ... and counts the calls.
fn stepping(calls: &mut usize) -> impl FnMut() -> f64 + '_ {
    move || {
        *calls += 1;
        (*calls - 1) as f64 / 10.0
    }
}

#[test]
fn plans_a_lambda_event() {
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {
            "messageId": "a", "receiptHandle": "r1", "body": "{\"order\": 1}\n",
            "attributes": {"AWSTraceHeader": "Root=1-abc;Sampled=1", "ApproximateReceiveCount": "3"},
            "messageAttributes": {
                "tenant": {"stringValue": "acme", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
            },
            "eventSource": "aws:sqs"
        },
        {
            "messageId": "b", "receiptHandle": "r2", "body": "  ünïcödé  ",
            "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs"
        }
    ]}))
    .unwrap();
    let mut calls = 0;
    let (batches, rejected) = plan(
        &event.records,
        &DelayRange::new(10, 19).unwrap(),
        PASS,
        stepping(&mut calls),
    );
    assert!(rejected.is_empty());
    assert_eq!(calls, 2);
    let want = vec![vec![
        Outgoing {
            message_id: "a".to_owned(),
            entry_id: "m0".to_owned(),
            body: "{\"order\": 1}\n".to_owned(),
            attributes: BTreeMap::from([
                (
                    "tenant".to_owned(),
                    OutAttribute {
                        data_type: "String".to_owned(),
                        value: AttributeValue::String("acme".to_owned()),
                    },
                ),
                (MARKER.to_owned(), marker(PASS)),
            ]),
            trace_header: Some("Root=1-abc;Sampled=1".to_owned()),
            delay_seconds: 10,
        },
        Outgoing {
            message_id: "b".to_owned(),
            entry_id: "m1".to_owned(),
            body: "  ünïcödé  ".to_owned(),
            attributes: BTreeMap::from([(MARKER.to_owned(), marker(PASS))]),
            trace_header: None,
            delay_seconds: 11,
        },
    ]];
    assert_eq!(batches, want);
}

#[test]
fn entry_ids_restart_in_each_batch() {
    let records: Vec<SqsMessage> = (0..25)
        .map(|i| message(Some(&format!("id-{i}")), Some("x")))
        .collect();
    let (batches, _) = plan(&records, &full_range(), PASS, || 0.5);
    let ids: Vec<Vec<&str>> = batches
        .iter()
        .map(|b| b.iter().map(|o| o.entry_id.as_str()).collect())
        .collect();
    let ten: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    assert_eq!(ids[0], ten);
    assert_eq!(ids[1], ten);
    assert_eq!(ids[2], ten[..5]);
    assert_eq!(ids.len(), 3);
}

#[test]
fn unusable_records_are_rejected_not_dropped() {
    let mut bad_attribute = message(Some("c"), Some("x"));
    bad_attribute
        .message_attributes
        .insert("k".to_owned(), string_attribute(None, "v"));
    let records = vec![
        message(None, Some("x")),
        message(Some("b"), None),
        bad_attribute,
        message(Some("d"), Some("x")),
    ];
    let mut calls = 0;
    let (batches, rejected) = plan(&records, &full_range(), PASS, stepping(&mut calls));
    assert_eq!(calls, 1, "only the accepted record draws a delay");
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0][0].message_id, "d");
    assert_eq!(
        rejected,
        vec![
            Rejected {
                message_id: None,
                reason: RejectReason::MissingMessageId
            },
            Rejected {
                message_id: Some("b".to_owned()),
                reason: RejectReason::MissingBody
            },
            Rejected {
                message_id: Some("c".to_owned()),
                reason: RejectReason::Attributes(AttributeError::MissingDataType {
                    message_id: "c".to_owned(),
                    name: "k".to_owned()
                })
            },
        ]
    );
}

#[test]
fn an_empty_body_is_sent_as_is() {
    // SQS would refuse it; the send reports that rather than the plan guessing.
    let (batches, rejected) = plan(&[message(Some("a"), Some(""))], &full_range(), "", || 0.0);
    assert!(rejected.is_empty());
    assert_eq!(batches[0][0].body, "");
}

#[test]
fn the_marker_is_left_off_at_ten_attributes() {
    let mut m = message(Some("a"), Some("x"));
    for i in 0..MAX_MESSAGE_ATTRIBUTES {
        m.message_attributes
            .insert(format!("a{i}"), string_attribute(Some("String"), "v"));
    }
    let (batches, _) = plan(&[m], &full_range(), PASS, || 0.0);
    let sent = &batches[0][0].attributes;
    assert_eq!(sent.len(), MAX_MESSAGE_ATTRIBUTES);
    assert!(!sent.contains_key(MARKER));
}

#[test]
fn the_marker_is_left_off_when_it_would_make_the_message_too_large() {
    let body = "x".repeat(MAX_MESSAGE_BYTES - 5);
    let (batches, _) = plan(
        &[message(Some("a"), Some(&body))],
        &full_range(),
        PASS,
        || 0.0,
    );
    assert!(batches[0][0].attributes.is_empty());
    assert_eq!(batches[0][0].size(), MAX_MESSAGE_BYTES - 5);

    let room = MAX_MESSAGE_BYTES - MARKER.len() - "String".len() - PASS.len();
    let body = "x".repeat(room);
    let (batches, _) = plan(
        &[message(Some("a"), Some(&body))],
        &full_range(),
        PASS,
        || 0.0,
    );
    assert!(
        batches[0][0].attributes.contains_key(MARKER),
        "fits exactly"
    );
    assert_eq!(batches[0][0].size(), MAX_MESSAGE_BYTES);
}

#[test]
fn an_oversized_message_is_planned_alone() {
    let big = "x".repeat(MAX_MESSAGE_BYTES + 1);
    let records = vec![
        message(Some("a"), Some("x")),
        message(Some("big"), Some(&big)),
        message(Some("c"), Some("x")),
    ];
    let (batches, rejected) = plan(&records, &full_range(), PASS, || 0.0);
    assert!(rejected.is_empty());
    let ids: Vec<Vec<&str>> = batches
        .iter()
        .map(|b| b.iter().map(|o| o.message_id.as_str()).collect())
        .collect();
    assert_eq!(ids, vec![vec!["a"], vec!["big"], vec!["c"]]);
    // Already too large: the marker would not be what breaks it, so it is kept.
    assert!(batches[1][0].attributes.contains_key(MARKER));
}

/// A message with ten attributes (no slot left for the marker) and a non-ASCII body that
/// make exactly `total` bytes as SQS counts them.
fn ten_attributes_totalling(id: &str, total: usize) -> SqsMessage {
    let mut m = message(Some(id), None);
    for i in 0..MAX_MESSAGE_ATTRIBUTES {
        m.message_attributes.insert(
            format!("attr-{i}"),
            string_attribute(Some("String.custom"), &format!("value-{i}")),
        );
    }
    let attributes = message_bytes("", &out_attributes(&m).unwrap());
    m.body = Some("é".repeat((total - attributes) / 2) + &"x".repeat((total - attributes) % 2));
    m
}

#[test]
fn a_message_at_the_limit_with_ten_attributes_goes_alone_whole() {
    for limit in [MAX_MESSAGE_BYTES, SMALL_QUEUE] {
        let records = vec![
            message(Some("a"), Some("x")),
            ten_attributes_totalling("full", limit),
            message(Some("c"), Some("x")),
        ];
        let (batches, rejected) = super::plan(&records, &full_range(), PASS, limit, || 0.0);
        assert!(rejected.is_empty());
        let planned: Vec<&Outgoing> = batches.iter().flatten().collect();
        assert_eq!(planned.len(), 3, "nothing dropped");
        let full = planned.iter().find(|o| o.message_id == "full").unwrap();
        assert_eq!(full.size(), limit, "counted with its attributes");
        assert_eq!(Some(&full.body), records[1].body.as_ref(), "not split");
        assert_eq!(full.attributes, out_attributes(&records[1]).unwrap());
        assert!(
            !full.attributes.contains_key(MARKER),
            "no slot for the marker"
        );
        if limit == MAX_MESSAGE_BYTES {
            // 1 MiB fills a batch on its own.
            let ids: Vec<Vec<&str>> = batches
                .iter()
                .map(|b| b.iter().map(|o| o.message_id.as_str()).collect())
                .collect();
            assert_eq!(ids, vec![vec!["a"], vec!["full"], vec!["c"]]);
        }
    }
}

#[test]
fn batches_are_packed_up_to_one_mib() {
    // Four messages of exactly a quarter MiB each, marker included, fill one call exactly.
    let marker_bytes = MARKER.len() + "String".len() + PASS.len();
    let quarter = MAX_BATCH_BYTES / 4;
    let mut records: Vec<SqsMessage> = (0..4)
        .map(|i| {
            let mut m = message(Some(&format!("q{i}")), None);
            m.message_attributes
                .insert("k".to_owned(), string_attribute(Some("Number"), "12"));
            m.body = Some("b".repeat(quarter - marker_bytes - ("k".len() + 6 + 2)));
            m
        })
        .collect();
    let (batches, _) = plan(&records, &full_range(), PASS, || 0.0);
    assert_eq!(batches.len(), 1);
    assert_eq!(
        batches[0].iter().map(Outgoing::size).sum::<usize>(),
        MAX_BATCH_BYTES
    );

    // One byte more goes to a second call.
    records.push(message(Some("one"), Some("")));
    records[4].body = Some(String::new());
    let (batches, _) = plan(&records, &full_range(), "", || 0.0);
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(
        sizes,
        [5],
        "no marker (empty pass), so room for an empty message"
    );
    let (batches, _) = plan(&records, &full_range(), PASS, || 0.0);
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert_eq!(sizes, [4, 1], "the batch is full: its marker does not fit");

    // Ten messages of a tenth of a MiB fit one call; the old 256 KiB limit needed five.
    let tenth: Vec<SqsMessage> = (0..10)
        .map(|i| {
            message(
                Some(&format!("t{i}")),
                Some(&"t".repeat(MAX_BATCH_BYTES / 10 - 40)),
            )
        })
        .collect();
    let (batches, _) = plan(&tenth, &full_range(), PASS, || 0.0);
    assert_eq!(batches.len(), 1);
    assert!(batches[0].iter().map(Outgoing::size).sum::<usize>() <= MAX_BATCH_BYTES);
}

#[test]
fn a_smaller_queue_limit_decides_the_marker_and_who_goes_alone() {
    // Fits a 256 KiB queue only without the marker.
    let body = "x".repeat(SMALL_QUEUE - 3);
    let (batches, _) = super::plan(
        &[message(Some("a"), Some(&body))],
        &full_range(),
        PASS,
        SMALL_QUEUE,
        || 0.0,
    );
    assert!(batches[0][0].attributes.is_empty());
    // The same message on a 1 MiB queue keeps it.
    let (batches, _) = plan(
        &[message(Some("a"), Some(&body))],
        &full_range(),
        PASS,
        || 0.0,
    );
    assert!(batches[0][0].attributes.contains_key(MARKER));

    // Over the queue's limit but well within a call: still planned, alone.
    let over = "x".repeat(SMALL_QUEUE + 1);
    let records = vec![
        message(Some("a"), Some("x")),
        message(Some("over"), Some(&over)),
        message(Some("c"), Some("x")),
    ];
    let (batches, rejected) = super::plan(&records, &full_range(), PASS, SMALL_QUEUE, || 0.0);
    assert!(rejected.is_empty());
    let ids: Vec<Vec<&str>> = batches
        .iter()
        .map(|b| b.iter().map(|o| o.message_id.as_str()).collect())
        .collect();
    assert_eq!(ids, vec![vec!["a"], vec!["over"], vec!["c"]]);
    // On a 1 MiB queue it shares.
    let (batches, _) = plan(&records, &full_range(), PASS, || 0.0);
    assert_eq!(batches.len(), 1);
}

#[test]
fn nothing_in_nothing_out() {
    let (batches, rejected) = plan(&[], &full_range(), PASS, || panic!("no draw expected"));
    assert!(batches.is_empty() && rejected.is_empty());
}

/// A body to generate; long ones are kept as a length so failures stay readable.
#[derive(Debug, Clone)]
enum Body {
    Text(String),
    Repeat(usize),
}

impl Body {
    fn text(&self) -> String {
        match self {
            Body::Text(t) => t.clone(),
            Body::Repeat(n) => "b".repeat(*n),
        }
    }
}

#[derive(Debug, Clone)]
struct Spec {
    has_id: bool,
    body: Option<Body>,
    attributes: Vec<(String, Option<String>, String)>,
    trace: Option<String>,
}

fn spec() -> impl Strategy<Value = Spec> {
    let body = prop_oneof![
        6 => any::<String>().prop_map(Body::Text),
        3 => (0..=MAX_BATCH_BYTES / 3).prop_map(Body::Repeat),
        1 => (MAX_MESSAGE_BYTES - 60..=MAX_MESSAGE_BYTES + 20).prop_map(Body::Repeat),
        1 => (SMALL_QUEUE - 60..=SMALL_QUEUE + 20).prop_map(Body::Repeat),
    ];
    let attribute = (
        "[a-z]{1,8}",
        prop_oneof![
            9 => Just(Some("String".to_owned())),
            1 => proptest::option::of("Number|Bogus"),
        ],
        "[a-z0-9]{0,8}",
    );
    (
        proptest::bool::weighted(0.95),
        proptest::option::weighted(0.95, body),
        proptest::collection::vec(attribute, 0..=MAX_MESSAGE_ATTRIBUTES),
        proptest::option::of("Root=1-[0-9a-f]{8}"),
    )
        .prop_map(|(has_id, body, attributes, trace)| Spec {
            has_id,
            body,
            attributes,
            trace,
        })
}

fn build(specs: &[Spec]) -> Vec<SqsMessage> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let id = s.has_id.then(|| format!("id-{i}"));
            let mut m = message(id.as_deref(), None);
            m.body = s.body.as_ref().map(Body::text);
            for (name, data_type, value) in &s.attributes {
                m.message_attributes
                    .insert(name.clone(), string_attribute(data_type.as_deref(), value));
            }
            if let Some(t) = &s.trace {
                m.attributes.insert(TRACE_HEADER.to_owned(), t.clone());
            }
            m
        })
        .collect()
}

fn is_entry_id(id: &str) -> bool {
    (1..=80).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Each record is planned once (with its exact body, attributes and trace header) or
    /// rejected once, both in record order; batches are valid `SendMessageBatch` requests.
    #[test]
    fn every_record_is_accounted_for_exactly_once(
        specs in proptest::collection::vec(spec(), 0..30),
        min in 0u32..=900,
        units in proptest::collection::vec(0.0..1.0f64, 30),
        limit in prop_oneof![Just(MAX_MESSAGE_BYTES), Just(SMALL_QUEUE), 1_024..=MAX_MESSAGE_BYTES],
    ) {
        let records = build(&specs);
        let range = DelayRange::new(min, 900).unwrap();
        let mut next = units.iter().copied();
        let (batches, rejected) =
            super::plan(&records, &range, PASS, limit, || next.next().unwrap_or(0.0));

        let planned: Vec<&Outgoing> = batches.iter().flatten().collect();
        prop_assert_eq!(planned.len() + rejected.len(), records.len());
        let (mut p, mut r) = (planned.iter(), rejected.iter());
        let mut draws = units.iter();
        for record in &records {
            match out_attributes(record) {
                Ok(received) if record.message_id.is_some() && record.body.is_some() => {
                    let o = p.next().unwrap();
                    prop_assert_eq!(Some(&o.message_id), record.message_id.as_ref());
                    prop_assert_eq!(Some(&o.body), record.body.as_ref());
                    prop_assert_eq!(&o.trace_header, &trace_header(record));
                    prop_assert_eq!(o.delay_seconds, range.draw(*draws.next().unwrap()));
                    // The marker is added when there is a free slot, unless it alone would
                    // push a message that fits over the limit.
                    let plain = message_bytes(&o.body, &received);
                    let marker_bytes = MARKER.len() + "String".len() + PASS.len();
                    let marked = received.len() < MAX_MESSAGE_ATTRIBUTES
                        && (plain + marker_bytes <= limit || plain > limit);
                    let mut without_marker = o.attributes.clone();
                    let found = without_marker.remove(MARKER);
                    prop_assert_eq!(found, marked.then(|| marker(PASS)));
                    prop_assert_eq!(without_marker, received);
                }
                _ => {
                    let rej = r.next().unwrap();
                    prop_assert_eq!(&rej.message_id, &record.message_id);
                }
            }
        }

        for batch in &batches {
            prop_assert!((1..=MAX_BATCH_ENTRIES).contains(&batch.len()));
            let total: usize = batch.iter().map(Outgoing::size).sum();
            prop_assert!(total <= MAX_BATCH_BYTES || batch.len() == 1);
            prop_assert!(batch.len() == 1 || batch.iter().all(|o| o.size() <= limit));
            let mut ids: Vec<&str> = batch.iter().map(|o| o.entry_id.as_str()).collect();
            prop_assert!(ids.iter().all(|id| is_entry_id(id)));
            ids.sort_unstable();
            ids.dedup();
            prop_assert_eq!(ids.len(), batch.len(), "entry ids repeat");
        }
    }
}
