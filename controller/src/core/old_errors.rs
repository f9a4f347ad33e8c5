//! No second circuit on the outage's old errors.
//!
//! When a circuit closes, the breaker re-arms its alarm (sets it to OK). CloudWatch then
//! re-evaluates it over its window (by default 3 periods of 60 s, 2 of them breaching), which
//! still holds the outage's datapoints from before the close: the alarm goes back to ALARM and
//! would open a second circuit for an outage that is over. An ALARM whose breaching datapoints
//! all predate the close is that echo. `OpenCircuit` then stands aside until the window holds
//! no datapoint from before the close and re-arms the alarm; a genuinely new outage (a
//! breaching datapoint after the close) opens a circuit as usual.

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

/// An ALARM raised at `alarm_ms`, after the circuit closed at `closed_ms`: if its window still
/// reaches back before the close and none of the datapoints after the close
/// (`after_close`, from [`AlarmRule::first_period_after`] on) breaches, it rests on the
/// outage's old errors alone. Then returns until when to stand aside before re-arming.
pub fn only_old_errors(
    rule: &AlarmRule,
    closed_ms: u64,
    alarm_ms: u64,
    after_close: &[f64],
) -> Option<u64> {
    let clear = rule.window_clear_ms(closed_ms);
    if alarm_ms >= clear {
        return None;
    }
    if after_close
        .iter()
        .any(|v| rule.comparison.breaches(*v, rule.threshold))
    {
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

    #[test]
    fn an_alarm_right_after_the_close_without_new_errors_is_the_outage_s_echo() {
        // CloudWatch re-evaluated a minute after the close: no errors since.
        let until = only_old_errors(&DEFAULT, CLOSED, CLOSED + 60_000, &[0.0, 0.0]);
        assert_eq!(until, Some(CLOSED + 270_000));
        // No datapoint at all since the close (a consumer nobody invokes): the same.
        assert_eq!(
            only_old_errors(&DEFAULT, CLOSED, CLOSED + 60_000, &[]),
            Some(CLOSED + 270_000)
        );
    }

    #[test]
    fn a_new_error_after_the_close_is_a_new_outage() {
        assert_eq!(
            only_old_errors(&DEFAULT, CLOSED, CLOSED + 60_000, &[0.0, 3.0]),
            None
        );
    }

    #[test]
    fn once_the_window_has_no_old_data_every_alarm_is_new() {
        let clear = DEFAULT.window_clear_ms(CLOSED);
        assert_eq!(only_old_errors(&DEFAULT, CLOSED, clear, &[]), None);
        assert!(only_old_errors(&DEFAULT, CLOSED, clear - 1, &[]).is_some());
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
        /// Whatever the rule and the datapoints: an alarm after the window cleared, or one
        /// with a breaching datapoint after the close, is never ignored; one that is ignored
        /// is re-armed no later than the window's clearing, and after the alarm.
        #[test]
        fn only_echoes_are_ignored_and_never_for_long(
            period in prop::sample::select(vec![10u32, 30, 60, 300, 3600]),
            periods in 1u32..=10,
            threshold in 0.0f64..10.0,
            closed in 1_700_000_000_000u64..1_800_000_000_000,
            after in 0u64..5_000_000,
            values in prop::collection::vec(0.0f64..20.0, 0..6),
        ) {
            let rule = AlarmRule {
                period_seconds: period,
                evaluation_periods: periods,
                threshold,
                comparison: Comparison::GreaterThanOrEqualToThreshold,
            };
            let alarm = closed + after;
            let verdict = only_old_errors(&rule, closed, alarm, &values);
            let breached = values.iter().any(|v| *v >= threshold);
            if breached || alarm >= rule.window_clear_ms(closed) {
                prop_assert_eq!(verdict, None);
            }
            if let Some(until) = verdict {
                prop_assert!(until > alarm);
                prop_assert!(until <= closed + u64::from(period) * 1000 * (u64::from(periods) + 2));
            }
        }
    }
}
