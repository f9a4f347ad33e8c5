//! The random delay each re-sent message gets.
//!
//! Spreading the backlog uniformly over `[min, max]` seconds turns one burst into a steady
//! trickle the recovered service can absorb. The draw is a plain function of a unit value so
//! it can be tested without randomness; [`random_unit`] supplies the real one.

use crate::config::ConfigError;

/// The SQS limit for a message's `DelaySeconds` (15 minutes).
pub const SQS_MAX_DELAY_SECONDS: u32 = 900;

/// A validated, inclusive range of delays in whole seconds.
///
/// Fields are private so a range that SQS would refuse cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayRange {
    min: u32,
    max: u32,
}

impl DelayRange {
    /// Accepts `min <= max <= 900`.
    pub fn new(min: u32, max: u32) -> Result<DelayRange, ConfigError> {
        if max > SQS_MAX_DELAY_SECONDS {
            return Err(ConfigError::MaxDelayTooLarge { max });
        }
        if min > max {
            return Err(ConfigError::MinDelayAboveMax { min, max });
        }
        Ok(DelayRange { min, max })
    }

    /// The single delay `seconds`, checked at compile time when used in a constant (a value
    /// above [`SQS_MAX_DELAY_SECONDS`] panics).
    pub const fn fixed(seconds: u32) -> DelayRange {
        assert!(
            seconds <= SQS_MAX_DELAY_SECONDS,
            "a delay above the SQS limit of 900 s"
        );
        DelayRange {
            min: seconds,
            max: seconds,
        }
    }

    pub fn min(&self) -> u32 {
        self.min
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    /// Maps `unit`, uniform in `[0, 1)`, to a delay uniform over `[min, max]` inclusive.
    ///
    /// Each of the `max - min + 1` values gets an equal slice of the unit interval. Out of range
    /// input is clamped (so `1.0` gives `max`) and NaN gives `min`: a bad draw must still yield
    /// a delay SQS accepts.
    pub fn draw(&self, unit: f64) -> u32 {
        if unit.is_nan() {
            return self.min;
        }
        let span = self.max - self.min;
        // `unit * (span + 1)` lies in [0, span + 1]; the cast saturates and the `min` catches
        // `unit == 1.0` and rounding up just below it.
        let offset = (unit.clamp(0.0, 1.0) * f64::from(span + 1)).floor() as u32;
        self.min + offset.min(span)
    }
}

/// One uniform draw from `[0, 1)` from the thread-local generator: the `draw` to hand to
/// [`crate::plan::plan`] outside tests.
pub fn random_unit() -> f64 {
    use rand::RngExt;
    rand::rng().random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The largest `f64` below 1.0, the top of what a generator returns.
    const BELOW_ONE: f64 = 1.0 - f64::EPSILON / 2.0;

    #[test]
    fn new_accepts_the_full_sqs_range() {
        let r = DelayRange::new(0, 900).unwrap();
        assert_eq!((r.min(), r.max()), (0, 900));
        assert!(DelayRange::new(900, 900).is_ok());
    }

    #[test]
    fn new_refuses_a_max_above_the_sqs_limit() {
        assert_eq!(
            DelayRange::new(0, 901),
            Err(ConfigError::MaxDelayTooLarge { max: 901 })
        );
        assert_eq!(
            DelayRange::new(901, 901),
            Err(ConfigError::MaxDelayTooLarge { max: 901 })
        );
    }

    #[test]
    fn fixed_is_the_single_value_range() {
        assert_eq!(DelayRange::fixed(60), DelayRange::new(60, 60).unwrap());
        assert_eq!(DelayRange::fixed(900).draw(0.0), 900);
        assert_eq!(DelayRange::fixed(0).draw(0.99), 0);
    }

    #[test]
    #[should_panic(expected = "above the SQS limit")]
    fn fixed_refuses_a_delay_above_the_sqs_limit() {
        let seconds = std::hint::black_box(901);
        DelayRange::fixed(seconds);
    }

    #[test]
    fn new_refuses_min_above_max() {
        assert_eq!(
            DelayRange::new(10, 9),
            Err(ConfigError::MinDelayAboveMax { min: 10, max: 9 })
        );
    }

    #[test]
    fn draw_covers_both_ends() {
        let r = DelayRange::new(5, 10).unwrap();
        assert_eq!(r.draw(0.0), 5);
        assert_eq!(r.draw(BELOW_ONE), 10);
        let full = DelayRange::new(0, 900).unwrap();
        assert_eq!(full.draw(0.0), 0);
        assert_eq!(full.draw(BELOW_ONE), 900);
    }

    #[test]
    fn draw_splits_the_unit_interval_evenly() {
        // Four values, four equal quarters.
        let r = DelayRange::new(1, 4).unwrap();
        let got: Vec<u32> = [0.0, 0.24, 0.25, 0.49, 0.5, 0.74, 0.75, 0.99]
            .iter()
            .map(|&u| r.draw(u))
            .collect();
        assert_eq!(got, vec![1, 1, 2, 2, 3, 3, 4, 4]);
    }

    #[test]
    fn draw_clamps_bad_units() {
        let r = DelayRange::new(3, 7).unwrap();
        assert_eq!(r.draw(f64::NAN), 3);
        assert_eq!(r.draw(-1.0), 3);
        assert_eq!(r.draw(f64::NEG_INFINITY), 3);
        assert_eq!(r.draw(1.0), 7);
        assert_eq!(r.draw(2.5), 7);
        assert_eq!(r.draw(f64::INFINITY), 7);
    }

    #[test]
    fn random_unit_stays_in_the_unit_interval() {
        for _ in 0..1000 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }

    fn range() -> impl Strategy<Value = DelayRange> {
        (0..=SQS_MAX_DELAY_SECONDS)
            .prop_flat_map(|max| (0..=max, Just(max)))
            .prop_map(|(min, max)| DelayRange::new(min, max).unwrap())
    }

    proptest! {
        #[test]
        fn draw_is_always_in_range(r in range(), unit in any::<f64>()) {
            let d = r.draw(unit);
            prop_assert!(r.min() <= d && d <= r.max(), "{d} outside {r:?}");
        }

        #[test]
        fn a_single_value_range_always_gives_it(v in 0..=SQS_MAX_DELAY_SECONDS, unit in any::<f64>()) {
            prop_assert_eq!(DelayRange::new(v, v).unwrap().draw(unit), v);
        }

        #[test]
        fn draw_is_monotonic(r in range(), a in 0.0..1.0f64, b in 0.0..1.0f64) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(r.draw(lo) <= r.draw(hi));
        }

        /// Uniformity: the middle of the k-th of `span + 1` equal slices maps to `min + k`.
        #[test]
        fn each_value_owns_an_equal_slice(r in range(), pick in any::<proptest::sample::Index>()) {
            let count = r.max() - r.min() + 1;
            let k = pick.index(count as usize) as u32;
            let unit = (f64::from(k) + 0.5) / f64::from(count);
            prop_assert_eq!(r.draw(unit), r.min() + k);
        }

        #[test]
        fn new_accepts_exactly_the_valid_ranges(min in 0..2000u32, max in 0..2000u32) {
            let valid = min <= max && max <= SQS_MAX_DELAY_SECONDS;
            prop_assert_eq!(DelayRange::new(min, max).is_ok(), valid);
        }
    }
}
