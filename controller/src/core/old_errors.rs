//! No second circuit on the outage's old errors.
//!
//! When a circuit closes, the breaker re-arms its alarm (sets it to OK). CloudWatch then
//! re-evaluates it over its window (by default 3 periods of 60 s, 2 of them breaching), which
//! still holds the outage's datapoints from before the close: the alarm goes back to ALARM and
//! would open a second circuit for an outage that is over. An ALARM whose breaching datapoints
//! all predate the close is that echo; CloudWatch lists the datapoints it evaluated in the
//! event (`detail.state.reasonData`, `evaluatedDatapoints`). `OpenCircuit` then stands aside
//! until the window holds no datapoint from before the close and re-arms the alarm; a
//! genuinely new outage (a breaching datapoint after the close) opens a circuit as usual, and
//! so does an ALARM set by hand (no evaluated datapoints).

use serde::{Deserialize, Serialize};

/// The comparison of a metric alarm, as CloudWatch names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    GreaterThanOrEqualToThreshold,
    GreaterThanThreshold,
    LessThanThreshold,
    LessThanOrEqualToThreshold,
}

impl Comparison {
    /// CloudWatch's name; `None` for the anomaly-detection comparisons, which have no fixed
    /// threshold.
    pub fn parse(name: &str) -> Option<Comparison> {
        Some(match name {
            "GreaterThanOrEqualToThreshold" => Comparison::GreaterThanOrEqualToThreshold,
            "GreaterThanThreshold" => Comparison::GreaterThanThreshold,
            "LessThanThreshold" => Comparison::LessThanThreshold,
            "LessThanOrEqualToThreshold" => Comparison::LessThanOrEqualToThreshold,
            _ => return None,
        })
    }

    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::GreaterThanOrEqualToThreshold => value >= threshold,
            Comparison::GreaterThanThreshold => value > threshold,
            Comparison::LessThanThreshold => value < threshold,
            Comparison::LessThanOrEqualToThreshold => value <= threshold,
        }
    }
}

/// How a single-metric alarm decides: its period, how many periods it looks back, and the
/// threshold each datapoint is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlarmRule {
    pub period_seconds: u32,
    pub evaluation_periods: u32,
    pub threshold: f64,
    pub comparison: Comparison,
}

impl AlarmRule {
    fn period_ms(&self) -> u64 {
        u64::from(self.period_seconds.max(1)) * 1000
    }

    /// The first period boundary at or after `closed_ms`: every datapoint from there on comes
    /// from after the close.
    pub fn first_period_after(&self, closed_ms: u64) -> u64 {
        closed_ms.div_ceil(self.period_ms()) * self.period_ms()
    }

    /// When no period of the alarm's window holds data from before the close any more, plus
    /// one period for CloudWatch to evaluate it.
    pub fn window_clear_ms(&self, closed_ms: u64) -> u64 {
        self.first_period_after(closed_ms)
            + (u64::from(self.evaluation_periods) + 1) * self.period_ms()
    }
}

/// One datapoint CloudWatch evaluated: the start of its period, and its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluated {
    pub period_start_ms: u64,
    pub value: f64,
}

/// The datapoints an alarm evaluation lists in its `reasonData` JSON (`evaluatedDatapoints`,
/// each `{"timestamp": "2026-12-01T10:11:00.000+0000", "value": 3.0, ...}`); `None` when it
/// lists none (a state set by hand) or the text is not that JSON.
pub fn evaluated_datapoints(reason_data: &str) -> Option<Vec<Evaluated>> {
    let data: serde_json::Value = serde_json::from_str(reason_data).ok()?;
    let points = data.get("evaluatedDatapoints")?.as_array()?;
    let evaluated: Vec<Evaluated> = points
        .iter()
        .filter_map(|p| {
            Some(Evaluated {
                period_start_ms: super::epoch_ms(p.get("timestamp")?.as_str()?)?,
                // A datapoint without a value was missing data.
                value: p.get("value")?.as_f64()?,
            })
        })
        .collect();
    (!evaluated.is_empty()).then_some(evaluated)
}

/// An ALARM raised at `alarm_ms`, after the circuit closed at `closed_ms`, on the
/// `evaluated` datapoints: if its window still reaches back before the close, it breached,
/// and every breaching datapoint's period began before the close, it rests on the outage's
/// old errors alone. Then returns until when to stand aside before re-arming.
pub fn only_old_errors(
    rule: &AlarmRule,
    closed_ms: u64,
    alarm_ms: u64,
    evaluated: &[Evaluated],
) -> Option<u64> {
    let clear = rule.window_clear_ms(closed_ms);
    if alarm_ms >= clear {
        return None;
    }
    let breaching: Vec<&Evaluated> = evaluated
        .iter()
        .filter(|d| rule.comparison.breaches(d.value, rule.threshold))
        .collect();
    let after_close = rule.first_period_after(closed_ms);
    if breaching.is_empty() || breaching.iter().any(|d| d.period_start_ms >= after_close) {
        return None;
    }
    Some(clear)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The breaker's own alarm with the template's defaults: Errors Sum ≥ 1 over 60 s, 3
    /// periods (2 breaching to alarm).
    const DEFAULT: AlarmRule = AlarmRule {
        period_seconds: 60,
        evaluation_periods: 3,
        threshold: 1.0,
        comparison: Comparison::GreaterThanOrEqualToThreshold,
    };

    /// A close 30 s into a minute (1_780_000_020_000 is a whole minute).
    const CLOSED: u64 = 1_780_000_050_000;

    #[test]
    fn the_window_clears_evaluation_periods_plus_one_after_the_first_whole_period() {
        assert_eq!(DEFAULT.first_period_after(CLOSED), CLOSED + 30_000);
        assert_eq!(DEFAULT.first_period_after(CLOSED + 30_000), CLOSED + 30_000);
        assert_eq!(DEFAULT.window_clear_ms(CLOSED), CLOSED + 30_000 + 240_000);
    }

    /// The periods before the close breach (the outage), the one after does not.
    fn points(values: &[(u64, f64)]) -> Vec<Evaluated> {
        values
            .iter()
            .map(|&(period_start_ms, value)| Evaluated {
                period_start_ms,
                value,
            })
            .collect()
    }

    #[test]
    fn an_alarm_right_after_the_close_on_old_errors_is_the_outage_s_echo() {
        // CloudWatch re-evaluated a minute after the close: the two breaching periods began
        // before it (one of them holds the close).
        let evaluated = points(&[
            (CLOSED - 90_000, 4.0),
            (CLOSED - 30_000, 2.0),
            (CLOSED + 30_000, 0.0),
        ]);
        let until = only_old_errors(&DEFAULT, CLOSED, CLOSED + 60_000, &evaluated);
        assert_eq!(until, Some(CLOSED + 270_000));
    }

    #[test]
    fn a_breaching_datapoint_after_the_close_is_a_new_outage() {
        let evaluated = points(&[(CLOSED - 30_000, 2.0), (CLOSED + 30_000, 3.0)]);
        assert_eq!(
            only_old_errors(&DEFAULT, CLOSED, CLOSED + 90_000, &evaluated),
            None
        );
    }

    #[test]
    fn an_alarm_without_a_breaching_datapoint_is_not_second_guessed() {
        // Missing data treated as breaching, say: nothing to date, so the alarm is believed.
        assert_eq!(
            only_old_errors(
                &DEFAULT,
                CLOSED,
                CLOSED + 60_000,
                &points(&[(CLOSED - 30_000, 0.0)])
            ),
            None
        );
        assert_eq!(
            only_old_errors(&DEFAULT, CLOSED, CLOSED + 60_000, &[]),
            None
        );
    }

    #[test]
    fn once_the_window_has_no_old_data_every_alarm_is_new() {
        let clear = DEFAULT.window_clear_ms(CLOSED);
        let old = points(&[(CLOSED - 30_000, 2.0)]);
        assert_eq!(only_old_errors(&DEFAULT, CLOSED, clear, &old), None);
        assert!(only_old_errors(&DEFAULT, CLOSED, clear - 1, &old).is_some());
    }

    #[test]
    fn the_evaluated_datapoints_are_read_from_the_reason_data() {
        // The shape CloudWatch writes (and the documented example, with evaluatedDatapoints).
        let data = r#"{"version":"1.0","queryDate":"2019-10-02T17:04:40.985+0000","startDate":"2019-10-02T16:59:00.000+0000","statistic":"Sum","period":60,"recentDatapoints":[99.5],"threshold":1.0,"evaluatedDatapoints":[{"timestamp":"2019-10-02T16:59:00.000+0000","sampleCount":1.0,"value":99.5},{"timestamp":"2019-10-02T17:00:00.000+0000","sampleCount":0.0}]}"#;
        assert_eq!(
            evaluated_datapoints(data),
            Some(vec![Evaluated {
                period_start_ms: 1_570_035_540_000,
                value: 99.5
            }])
        );
        // Set by hand, or not CloudWatch's JSON: nothing to re-evaluate.
        assert_eq!(evaluated_datapoints(r#"{"version":"1.0"}"#), None);
        assert_eq!(evaluated_datapoints("opened by hand"), None);
    }

    #[test]
    fn comparisons_follow_cloudwatch() {
        let c = |name| Comparison::parse(name).expect(name);
        assert!(c("GreaterThanOrEqualToThreshold").breaches(1.0, 1.0));
        assert!(!c("GreaterThanThreshold").breaches(1.0, 1.0));
        assert!(c("LessThanThreshold").breaches(0.5, 1.0));
        assert!(c("LessThanOrEqualToThreshold").breaches(1.0, 1.0));
        assert_eq!(
            Comparison::parse("LessThanLowerOrGreaterThanUpperThreshold"),
            None
        );
    }

    proptest! {
        /// Whatever the rule and the datapoints: an alarm after the window cleared, one with
        /// a breaching datapoint in a period that began after the close, or one with no
        /// breaching datapoint is never ignored; one that is ignored is re-armed after the
        /// alarm and no later than the window's clearing.
        #[test]
        fn only_echoes_are_ignored_and_never_for_long(
            period in prop::sample::select(vec![10u32, 30, 60, 300, 3600]),
            periods in 1u32..=10,
            threshold in 0.0f64..10.0,
            closed in 1_700_000_000_000u64..1_800_000_000_000,
            after in 0u64..5_000_000,
            values in prop::collection::vec((0u64..6, 0.0f64..20.0), 0..6),
        ) {
            let rule = AlarmRule {
                period_seconds: period,
                evaluation_periods: periods,
                threshold,
                comparison: Comparison::GreaterThanOrEqualToThreshold,
            };
            let period_ms = u64::from(period) * 1000;
            // Periods from three before the close's to two after.
            let base = (closed / period_ms).saturating_sub(3) * period_ms;
            let evaluated: Vec<Evaluated> = values
                .iter()
                .map(|&(k, value)| Evaluated { period_start_ms: base + k * period_ms, value })
                .collect();
            let alarm = closed + after;
            let verdict = only_old_errors(&rule, closed, alarm, &evaluated);
            let breaching: Vec<&Evaluated> =
                evaluated.iter().filter(|d| d.value >= threshold).collect();
            let new_breach = breaching.iter().any(|d| d.period_start_ms >= closed);
            if new_breach || breaching.is_empty() || alarm >= rule.window_clear_ms(closed) {
                prop_assert_eq!(verdict, None);
            }
            if let Some(until) = verdict {
                prop_assert!(until > alarm);
                prop_assert!(until <= closed + period_ms * (u64::from(periods) + 2));
            }
        }
    }
}
