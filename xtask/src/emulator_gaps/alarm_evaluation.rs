//! How CloudWatch evaluates a single-metric alarm, as a pure function: the alarm's own
//! definition (statistic, period, M out of N datapoints, threshold, comparison, missing data
//! treatment) over the datapoints of its last N complete periods.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }

    pub fn parse(value: &str) -> Option<AlarmState> {
        match value {
            "OK" => Some(AlarmState::Ok),
            "ALARM" => Some(AlarmState::Alarm),
            "INSUFFICIENT_DATA" => Some(AlarmState::InsufficientData),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    GreaterThanOrEqual,
    GreaterThan,
    LessThan,
    LessThanOrEqual,
}

impl Comparison {
    pub fn parse(operator: &str) -> Option<Comparison> {
        match operator {
            "GreaterThanOrEqualToThreshold" => Some(Comparison::GreaterThanOrEqual),
            "GreaterThanThreshold" => Some(Comparison::GreaterThan),
            "LessThanThreshold" => Some(Comparison::LessThan),
            "LessThanOrEqualToThreshold" => Some(Comparison::LessThanOrEqual),
            // Anomaly-detection operators need a band the emulator does not compute.
            _ => None,
        }
    }

    fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::GreaterThanOrEqual => value >= threshold,
            Comparison::GreaterThan => value > threshold,
            Comparison::LessThan => value < threshold,
            Comparison::LessThanOrEqual => value <= threshold,
        }
    }

    /// The words CloudWatch uses in a state reason.
    fn phrase(self) -> &'static str {
        match self {
            Comparison::GreaterThanOrEqual => "greater than or equal to",
            Comparison::GreaterThan => "greater than",
            Comparison::LessThan => "less than",
            Comparison::LessThanOrEqual => "less than or equal to",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingData {
    Missing,
    Ignore,
    Breaching,
    NotBreaching,
}

impl MissingData {
    /// `TreatMissingData`; CloudWatch's default is `missing`.
    pub fn parse(value: Option<&str>) -> MissingData {
        match value {
            Some("breaching") => MissingData::Breaching,
            Some("notBreaching") => MissingData::NotBreaching,
            Some("ignore") => MissingData::Ignore,
            _ => MissingData::Missing,
        }
    }

    fn reason_word(self) -> &'static str {
        match self {
            MissingData::Breaching => "Breaching",
            _ => "NonBreaching",
        }
    }
}

/// One metric's statistic over a period.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricStat {
    pub namespace: String,
    pub metric_name: String,
    pub dimensions: Vec<(String, String)>,
    pub statistic: String,
    pub period_s: i64,
}

/// One of a metric-math alarm's `Metrics`: a metric or an expression over the others.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    pub id: String,
    pub label: Option<String>,
    pub return_data: bool,
    pub expression: Option<String>,
    pub metric_stat: Option<MetricStat>,
}

/// What an alarm watches: one metric, or the expression of a metric-math alarm.
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmSource {
    Metric(MetricStat),
    Math(Vec<MetricQuery>),
}

/// A deployed metric alarm, as DescribeAlarms returns it (only what evaluation needs).
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmDefinition {
    pub name: String,
    pub arn: String,
    pub description: Option<String>,
    pub source: AlarmSource,
    pub period_s: i64,
    pub evaluation_periods: u32,
    pub datapoints_to_alarm: u32,
    pub threshold: f64,
    pub comparison: Comparison,
    pub missing_data: MissingData,
}

impl AlarmDefinition {
    /// End of the last complete period at `now_s`: CloudWatch evaluates whole periods.
    pub fn last_period_end(&self, now_s: i64) -> i64 {
        now_s.div_euclid(self.period_s) * self.period_s
    }

    /// The time range whose datapoints the evaluation at `period_end` reads.
    pub fn evaluation_range(&self, period_end: i64) -> (i64, i64) {
        (
            period_end - self.period_s * i64::from(self.evaluation_periods),
            period_end,
        )
    }

    /// Whether the alarm reads a metric of `namespace`.
    pub fn reads(&self, namespace: &str) -> bool {
        match &self.source {
            AlarmSource::Metric(stat) => stat.namespace == namespace,
            AlarmSource::Math(queries) => queries
                .iter()
                .filter_map(|q| q.metric_stat.as_ref())
                .any(|stat| stat.namespace == namespace),
        }
    }
}

/// How long an evaluation waits for a period's `AWS/SQS` datapoints, after the period's end:
/// past it, the period is evaluated on what there is (a stopped emulator reports nothing).
pub const SQS_REPORT_WAIT_MS: i64 = 20_000;

/// Whether the `AWS/SQS` datapoints of every second before `period_end` (epoch seconds) are
/// in: the emulator has reported each second through `reported_through` (0: none yet), and
/// a loaded emulator reports late. CloudWatch evaluates a period on its whole data.
pub fn sqs_period_complete(period_end: i64, reported_through: i64, now_ms: i64) -> bool {
    reported_through >= period_end - 1 || now_ms - period_end * 1000 >= SQS_REPORT_WAIT_MS
}

/// One period's value of the alarm's statistic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Datapoint {
    pub period_start_s: i64,
    pub value: f64,
    pub sample_count: f64,
}

/// The outcome of one evaluation: the state, and the reason CloudWatch would record.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub state: AlarmState,
    pub reason: String,
    /// `StateReasonData`, a JSON document CloudWatch stores as a string.
    pub reason_data: String,
}

/// Evaluates `alarm` at `period_end` (a period boundary) over `datapoints` (any order; those
/// outside the evaluation range are ignored), given its `current` state and the previous
/// transition's direction for the reason text.
pub fn evaluate(
    alarm: &AlarmDefinition,
    datapoints: &[Datapoint],
    period_end: i64,
    current: AlarmState,
    query_ms: i64,
) -> Evaluation {
    let (start, end) = alarm.evaluation_range(period_end);
    let mut recent: Vec<Datapoint> = datapoints
        .iter()
        .copied()
        .filter(|d| d.period_start_s >= start && d.period_start_s < end)
        .collect();
    // Newest first, as CloudWatch lists "the last N datapoints".
    recent.sort_by_key(|d| std::cmp::Reverse(d.period_start_s));
    recent.dedup_by_key(|d| d.period_start_s);

    let n = alarm.evaluation_periods;
    let m = alarm.datapoints_to_alarm.clamp(1, n.max(1));
    let missing = n.saturating_sub(recent.len() as u32);
    let breaching_present = recent
        .iter()
        .filter(|d| alarm.comparison.breaches(d.value, alarm.threshold))
        .count() as u32;
    let (breaching, evaluated) = match alarm.missing_data {
        MissingData::Breaching => (breaching_present + missing, n),
        MissingData::NotBreaching => (breaching_present, n),
        MissingData::Missing | MissingData::Ignore => (breaching_present, recent.len() as u32),
    };

    let state = if recent.is_empty() {
        match alarm.missing_data {
            MissingData::Breaching => AlarmState::Alarm,
            MissingData::NotBreaching => AlarmState::Ok,
            MissingData::Ignore => current,
            MissingData::Missing => AlarmState::InsufficientData,
        }
    } else if breaching >= m {
        AlarmState::Alarm
    } else {
        AlarmState::Ok
    };

    let reason = reason(
        alarm, &recent, missing, breaching, evaluated, m, current, state,
    );
    let reason_data = reason_data(alarm, &recent, start, query_ms);
    Evaluation {
        state,
        reason,
        reason_data,
    }
}

#[allow(clippy::too_many_arguments)]
fn reason(
    alarm: &AlarmDefinition,
    recent: &[Datapoint],
    missing: u32,
    breaching: u32,
    evaluated: u32,
    m: u32,
    from: AlarmState,
    to: AlarmState,
) -> String {
    let n = alarm.evaluation_periods;
    if recent.is_empty() {
        return match alarm.missing_data {
            MissingData::Breaching | MissingData::NotBreaching => format!(
                "Threshold Crossed: no datapoints were received for {n} period{} and {n} missing datapoint{} were treated as [{}].",
                plural(n),
                plural(n),
                alarm.missing_data.reason_word()
            ),
            _ => format!("Insufficient Data: {n} datapoint{} were unknown.", plural(n)),
        };
    }
    let alarming = to == AlarmState::Alarm;
    let counted = if alarming {
        breaching
    } else {
        evaluated - breaching
    };
    let mut listed = String::new();
    for (i, d) in recent.iter().enumerate() {
        if i > 0 {
            listed.push_str(", ");
        }
        let _ = write!(
            listed,
            "{} ({})",
            number(d.value),
            reason_time(d.period_start_s)
        );
    }
    let verb = match (counted == 1, alarming) {
        (true, true) => "was",
        (false, true) => "were",
        (true, false) => "was not",
        (false, false) => "were not",
    };
    let mut text = format!(
        "Threshold Crossed: {counted} out of the last {evaluated} datapoints [{listed}] {verb} {} the threshold ({}) (minimum {m} datapoint{} for {} -> {} transition).",
        alarm.comparison.phrase(),
        number(alarm.threshold),
        plural(m),
        from.as_str(),
        to.as_str(),
    );
    if missing > 0
        && matches!(
            alarm.missing_data,
            MissingData::Breaching | MissingData::NotBreaching
        )
    {
        text = text.replacen(
            "Threshold Crossed: ",
            &format!(
                "Threshold Crossed: {missing} missing datapoint{} treated as [{}] and ",
                plural(missing),
                alarm.missing_data.reason_word()
            ),
            1,
        );
    }
    text
}

/// `StateReasonData`; a metric-math alarm's has no statistic and no sample counts.
fn reason_data(alarm: &AlarmDefinition, recent: &[Datapoint], start: i64, query_ms: i64) -> String {
    let statistic = match &alarm.source {
        AlarmSource::Metric(stat) => Some(&stat.statistic),
        AlarmSource::Math(_) => None,
    };
    let mut data = serde_json::json!({
        "version": "1.0",
        "queryDate": state_timestamp(query_ms),
        "startDate": state_timestamp(start * 1000),
        "period": alarm.period_s,
        "recentDatapoints": recent.iter().map(|d| d.value).collect::<Vec<_>>(),
        "threshold": alarm.threshold,
        "evaluatedDatapoints": recent.iter().map(|d| {
            let mut point = serde_json::json!({
                "timestamp": state_timestamp(d.period_start_s * 1000),
                "value": d.value,
            });
            if statistic.is_some() {
                point["sampleCount"] = serde_json::json!(d.sample_count);
            }
            point
        }).collect::<Vec<_>>(),
    });
    if let Some(statistic) = statistic {
        data["statistic"] = serde_json::json!(statistic);
    }
    data.to_string()
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// CloudWatch prints values as Java doubles do: `1.0`, `2.5`.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.1}")
    } else {
        format!("{value}")
    }
}

/// Civil date (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

struct Utc {
    year: i64,
    month: u32,
    day: u32,
    hour: i64,
    minute: i64,
    second: i64,
    millis: i64,
}

fn utc(epoch_ms: i64) -> Utc {
    let secs = epoch_ms.div_euclid(1000);
    let (year, month, day) = civil(secs.div_euclid(86_400));
    let in_day = secs.rem_euclid(86_400);
    Utc {
        year,
        month,
        day,
        hour: in_day / 3600,
        minute: in_day % 3600 / 60,
        second: in_day % 60,
        millis: epoch_ms.rem_euclid(1000),
    }
}

/// An event envelope's `time`: `2019-10-02T17:04:40Z`.
pub fn event_time(epoch_ms: i64) -> String {
    let t = utc(epoch_ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// A state's `timestamp` in alarm events and reason data: `2019-10-02T17:04:40.989+0000`.
pub fn state_timestamp(epoch_ms: i64) -> String {
    let t = utc(epoch_ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+0000",
        t.year, t.month, t.day, t.hour, t.minute, t.second, t.millis
    )
}

/// A datapoint's time in a state reason: `02/10/19 16:59:00` (dd/MM/yy).
fn reason_time(epoch_s: i64) -> String {
    let t = utc(epoch_s * 1000);
    format!(
        "{:02}/{:02}/{:02} {:02}:{:02}:{:02}",
        t.day,
        t.month,
        t.year.rem_euclid(100),
        t.hour,
        t.minute,
        t.second
    )
}

#[cfg(test)]
mod tests;
