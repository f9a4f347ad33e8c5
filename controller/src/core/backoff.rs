//! Capped exponential backoff with full jitter between probes.
//!
//! Full jitter (a uniform draw in `[0, ceiling]`) spreads the probes of many
//! breakers that opened at the same moment, so a shared downstream that is
//! recovering is not hit by synchronised waves.

/// The longest visibility timeout SQS accepts (12 hours).
pub const MAX_VISIBILITY_SECONDS: u32 = 43_200;

/// Backoff parameters in whole seconds (Step Functions `Wait` takes seconds).
///
/// Validated by the configuration: `base_seconds >= 1` and
/// `cap_seconds >= base_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base_seconds: u32,
    pub cap_seconds: u32,
}

impl Backoff {
    /// Upper bound of the jitter window for the given attempt (0-based):
    /// `min(cap, base * 2^attempt)`, saturating so that no attempt count can
    /// overflow.
    pub fn ceiling(&self, attempt: u32) -> u32 {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.base_seconds
            .saturating_mul(factor)
            .min(self.cap_seconds)
    }

    /// Seconds to wait before probe `attempt`, given a uniform draw `unit`
    /// in `[0, 1)`.
    ///
    /// The result is `round(unit * ceiling)` but never below one second: a
    /// zero wait is pointless and must never turn into a probe storm.
    /// `unit` is clamped into `[0, 1]`; NaN counts as `1.0`, the longest (most
    /// conservative) wait.
    pub fn delay(&self, attempt: u32, unit: f64) -> u32 {
        let unit = if unit.is_nan() {
            1.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        let ceiling = self.ceiling(attempt);
        // `unit <= 1`, so the product never exceeds `ceiling`; the float to
        // int cast saturates.
        let jittered = (unit * f64::from(ceiling)).round() as u32;
        jittered.min(ceiling).max(1)
    }

    /// How long a message whose probe `attempt` failed stays hidden: the window the next
    /// wait is drawn from. The next probe then takes another message when there is one, so
    /// no single message collects the receives of every failed probe (and lands in the DLQ
    /// for an outage that was not its fault), and a poison message cannot hold the circuit
    /// open by being probed over and over.
    pub fn failed_probe_hide_seconds(&self, attempt: u32) -> u32 {
        self.ceiling(attempt).min(MAX_VISIBILITY_SECONDS)
    }

    /// [`Backoff::delay`] with the draw taken from `rng`; for callers that
    /// own a random number generator.
    pub fn delay_with_rng<R: rand::Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> u32 {
        use rand::RngExt;
        self.delay(attempt, rng.random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const B: Backoff = Backoff {
        base_seconds: 5,
        cap_seconds: 300,
    };

    #[test]
    fn ceiling_doubles_until_cap() {
        let got: Vec<u32> = (0..8).map(|a| B.ceiling(a)).collect();
        assert_eq!(got, vec![5, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn ceiling_saturates_for_huge_attempts() {
        assert_eq!(B.ceiling(31), 300);
        assert_eq!(B.ceiling(32), 300);
        assert_eq!(B.ceiling(u32::MAX), 300);
        let wide = Backoff {
            base_seconds: 3,
            cap_seconds: u32::MAX,
        };
        assert_eq!(wide.ceiling(40), u32::MAX);
    }

    #[test]
    fn delay_is_full_jitter_over_ceiling() {
        assert_eq!(B.delay(2, 0.5), 10);
        assert_eq!(B.delay(2, 0.99), 20);
        assert_eq!(B.delay(10, 0.5), 150);
    }

    #[test]
    fn delay_is_at_least_one_second() {
        assert_eq!(B.delay(0, 0.0), 1);
        assert_eq!(B.delay(0, 0.01), 1);
        assert_eq!(B.delay(0, -3.0), 1);
    }

    #[test]
    fn delay_treats_nan_and_out_of_range_conservatively() {
        assert_eq!(B.delay(3, f64::NAN), 40);
        assert_eq!(B.delay(3, 7.0), 40);
        assert_eq!(B.delay(3, f64::INFINITY), 40);
        assert_eq!(B.delay(3, f64::NEG_INFINITY), 1);
    }

    #[test]
    fn delay_with_rng_stays_in_window() {
        let mut rng = rand::rng();
        for attempt in 0..20 {
            let d = B.delay_with_rng(attempt, &mut rng);
            assert!((1..=B.ceiling(attempt)).contains(&d), "{d}");
        }
    }

    #[test]
    fn a_failed_probe_message_hides_for_the_next_window_within_sqs_limits() {
        let b = Backoff {
            base_seconds: 5,
            cap_seconds: 300,
        };
        assert_eq!(b.failed_probe_hide_seconds(1), 10);
        assert_eq!(b.failed_probe_hide_seconds(20), 300);
        let long = Backoff {
            base_seconds: 3_600,
            cap_seconds: 86_400,
        };
        assert_eq!(long.failed_probe_hide_seconds(5), MAX_VISIBILITY_SECONDS);
    }

    fn backoffs() -> impl Strategy<Value = Backoff> {
        (1u32..=86_400)
            .prop_flat_map(|base| (Just(base), base..=u32::MAX))
            .prop_map(|(base_seconds, cap_seconds)| Backoff {
                base_seconds,
                cap_seconds,
            })
    }

    fn units() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => 0.0f64..1.0,
            1 => any::<f64>(),
            1 => Just(f64::NAN),
        ]
    }

    proptest! {
        #[test]
        fn delay_within_one_and_cap(b in backoffs(), attempt in any::<u32>(), unit in units()) {
            let d = b.delay(attempt, unit);
            prop_assert!(d >= 1);
            prop_assert!(d <= b.cap_seconds);
            prop_assert!(d <= b.ceiling(attempt));
        }

        #[test]
        fn ceiling_non_decreasing_and_reaches_cap(b in backoffs(), attempt in 0u32..200) {
            prop_assert!(b.ceiling(attempt) <= b.ceiling(attempt + 1));
            prop_assert!(b.ceiling(attempt) <= b.cap_seconds);
            // base >= 1 doubles past any u32 cap within 32 steps.
            prop_assert_eq!(b.ceiling(32), b.cap_seconds);
            prop_assert_eq!(b.ceiling(u32::MAX), b.cap_seconds);
        }

        #[test]
        fn ceiling_zero_is_base(b in backoffs()) {
            prop_assert_eq!(b.ceiling(0), b.base_seconds.min(b.cap_seconds));
        }

        #[test]
        fn delay_monotone_in_unit(b in backoffs(), attempt in 0u32..64, u in 0.0f64..1.0, v in 0.0f64..1.0) {
            let (lo, hi) = if u <= v { (u, v) } else { (v, u) };
            prop_assert!(b.delay(attempt, lo) <= b.delay(attempt, hi));
        }
    }
}
