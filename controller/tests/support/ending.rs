//! The harness of the ending tests (ending.rs, recovery.rs): every rule an ending may use.

use super::*;
use aws_sdk_sfn::types::ExecutionStatus;
use controller::core::Next;
use controller::steps::Context;

/// Every rule an ending may use. By default this execution holds the circuit open, the
/// consumer's mapping is Disabled and settles Enabled once switched on, and no rejitter is
/// configured (its rules are there for the tests that configure one).
pub struct Ending {
    pub get_item: Rule,
    pub scan: Rule,
    pub describe: Rule,
    pub take_over: Rule,
    pub get_mapping: Rule,
    pub enable: Rule,
    pub finish: Rule,
    pub reset_alarm: Rule,
    pub put_event: Rule,
    pub details: Arc<Mutex<Vec<Value>>>,
    pub put_metric: Rule,
    pub list_rejitter: Rule,
    pub disable_rejitter: Rule,
    pub get_rejitter: Rule,
}

impl Ending {
    pub fn new(event: &'static str, metric: &'static str) -> Ending {
        let (put_event, details) = put_event_where(event, |d| {
            d["mapping"] == UUID
                && d["queue"] == QUEUE_ARN
                && d["function"] == FUNCTION
                && d["execution"] == EXECUTION
        });
        Ending {
            get_item: get_item(Some(item("OPEN", EXECUTION))),
            scan: scan_open_circuits(vec![item("OPEN", EXECUTION)]),
            describe: describe_execution(EXECUTION, ExecutionStatus::Aborted),
            take_over: take_over_by(EXECUTION, recovery_owner(EXECUTION)),
            get_mapping: get_mapping(&["Disabled", "Enabling", "Enabled"]),
            enable: enable_mapping(),
            finish: finish("CLOSED"),
            reset_alarm: reset_alarm(),
            put_event,
            details,
            put_metric: put_metric(metric),
            list_rejitter: list_rejitter_mappings(&["Enabled"]),
            disable_rejitter: switch_rejitter(false),
            get_rejitter: get_rejitter_mapping(&["Enabled", "Disabling", "Disabled"]),
        }
    }

    pub fn close() -> Ending {
        Ending::new("Circuit Closed", "CircuitClosed")
    }

    pub fn gave_up() -> Ending {
        Ending::new("Circuit Gave Up", "CircuitGaveUp")
    }

    /// A recovery: it finds the ended execution's circuit, takes it over under its own
    /// name, and ends it as that owner.
    pub fn recovered() -> Ending {
        Ending {
            scan: scan_recoverable_circuits(vec![item("OPEN", EXECUTION)]),
            finish: finish_by("CLOSED", recovery_owner(EXECUTION)),
            ..Ending::new("Circuit Recovered", "CircuitRecovered")
        }
    }

    pub fn mocks(&self) -> Mocks {
        Mocks {
            sqs: vec![],
            lambda: vec![
                self.get_mapping.clone(),
                self.enable.clone(),
                self.list_rejitter.clone(),
                self.disable_rejitter.clone(),
                self.get_rejitter.clone(),
            ],
            cloudwatch: vec![self.reset_alarm.clone(), self.put_metric.clone()],
            eventbridge: vec![self.put_event.clone()],
            dynamodb: vec![
                self.get_item.clone(),
                self.scan.clone(),
                self.take_over.clone(),
                self.finish.clone(),
            ],
            sfn: vec![self.describe.clone()],
        }
    }

    pub fn context(&self, config: Config) -> Context {
        self.mocks().context(config)
    }

    /// A context whose calls are also logged in order.
    pub fn spied(&self, config: Config) -> (Context, Log) {
        let (mocks, log) = self.mocks().spied();
        (mocks.context(config), log)
    }

    pub fn details(&self) -> Vec<Value> {
        self.details.lock().unwrap().clone()
    }

    #[track_caller]
    pub fn assert_calls(&self, expected: &[(&str, usize)]) {
        assert_only(
            &[
                ("get_item", &self.get_item),
                ("scan", &self.scan),
                ("describe", &self.describe),
                ("take_over", &self.take_over),
                ("get_mapping", &self.get_mapping),
                ("enable", &self.enable),
                ("finish", &self.finish),
                ("reset_alarm", &self.reset_alarm),
                ("put_event", &self.put_event),
                ("put_metric", &self.put_metric),
                ("list_rejitter", &self.list_rejitter),
                ("disable_rejitter", &self.disable_rejitter),
                ("get_rejitter", &self.get_rejitter),
            ],
            expected,
        );
    }
}

/// The calls of ending the circuit this execution holds (ownership read first): Enabled
/// given back (the mapping read `gets` times, switched on `updates` times), the item
/// finished, the alarm reset, one event.
pub fn ended(gets: usize, updates: usize) -> Vec<(&'static str, usize)> {
    vec![
        ("get_item", 1),
        ("get_mapping", gets),
        ("enable", updates),
        ("finish", 1),
        ("reset_alarm", 1),
        ("put_event", 1),
        ("put_metric", 1),
    ]
}

/// Circuit items someone else holds (or none).
pub fn others() -> Vec<Option<Item>> {
    vec![
        Some(item("OPEN", OTHER_EXECUTION)),
        Some(item("GAVE_UP", OTHER_EXECUTION)),
        Some(item("CLOSED", OTHER_EXECUTION)),
        None,
    ]
}

pub fn healthy() -> Circuit {
    Circuit {
        next: Some(Next::Close),
        ..circuit()
    }
}
