//! The parser and the evaluator against CloudWatch's documented metric math.

use super::*;
use proptest::prelude::*;

const PERIODS: [i64; 3] = [0, 10, 20];

fn series(points: &[(i64, f64)]) -> Series {
    points.iter().copied().collect()
}

fn run(text: &str, inputs: &[(&str, Series)]) -> Series {
    let series: BTreeMap<String, Series> = inputs
        .iter()
        .map(|(id, s)| (id.to_string(), s.clone()))
        .collect();
    evaluate(
        &parse(text).unwrap(),
        &Inputs {
            series: &series,
            periods: &PERIODS,
        },
    )
    .unwrap()
}

/// The consumer-failed-records alarm's expression, with N = 10.
const FAILED_SHARE: &str = "IF(received >= 10, 100 * (received - FILL(deleted, 0)) / received, 0)";
/// The consumer-stalled alarm's expression.
const STALLED: &str = "IF(in_flight > 0 AND FILL(deleted, 0) == 0, 1, 0)";

#[test]
fn the_failed_share_of_received_records() {
    let received = series(&[(0, 40.0), (10, 5.0), (20, 20.0)]);
    let deleted = series(&[(0, 30.0), (20, 20.0)]);
    let share = run(
        FAILED_SHARE,
        &[("received", received), ("deleted", deleted)],
    );
    // 10 of 40 not deleted; too few received to judge; all deleted.
    assert_eq!(share, series(&[(0, 25.0), (10, 0.0), (20, 0.0)]));
    // Nothing deleted at all: every received record failed.
    let share = run(
        FAILED_SHARE,
        &[
            ("received", series(&[(0, 12.0)])),
            ("deleted", Series::new()),
        ],
    );
    assert_eq!(share, series(&[(0, 100.0)]));
}

#[test]
fn stalled_means_in_flight_with_nothing_deleted() {
    let in_flight = series(&[(0, 3.0), (10, 3.0), (20, 0.0)]);
    let deleted = series(&[(10, 2.0)]);
    let stalled = run(STALLED, &[("in_flight", in_flight), ("deleted", deleted)]);
    assert_eq!(stalled, series(&[(0, 1.0), (10, 0.0), (20, 0.0)]));
}

#[test]
fn series_operations_keep_the_timestamps_both_have() {
    let a = series(&[(0, 1.0), (10, 2.0)]);
    let b = series(&[(10, 5.0), (20, 1.0)]);
    assert_eq!(
        run("a + b", &[("a", a.clone()), ("b", b.clone())]),
        series(&[(10, 7.0)])
    );
    assert_eq!(
        run("a * 2", &[("a", a.clone())]),
        series(&[(0, 2.0), (10, 4.0)])
    );
    assert_eq!(
        run("FILL(a, 0) + FILL(b, 0)", &[("a", a.clone()), ("b", b)]),
        series(&[(0, 1.0), (10, 7.0), (20, 1.0)])
    );
    assert_eq!(run("a / 0", &[("a", a)]), Series::new());
}

#[test]
fn operators_and_precedence() {
    let cases = [
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("10 - 4 - 3", 3.0),
        ("8 / 4 / 2", 1.0),
        ("-2 + 5", 3.0),
        ("1 < 2 AND 2 < 1", 0.0),
        ("1 < 2 OR 2 < 1", 1.0),
        ("1 < 2 && 3 >= 3", 1.0),
        ("NOT 0", 1.0),
        ("!(1 == 1)", 0.0),
        ("2 != 2 || 1 <= 0", 0.0),
        ("1 + 1 == 2", 1.0),
        ("if(0, 1, 2)", 2.0),
        ("MAX([1, 5, 3])", 5.0),
        ("MIN([4, 2])", 2.0),
        ("SUM([1, 2, 3])", 6.0),
    ];
    for (text, expected) in cases {
        assert_eq!(
            run(text, &[]),
            series(&[(0, expected), (10, expected), (20, expected)]),
            "{text}"
        );
    }
}

#[test]
fn array_aggregates_are_per_timestamp_series_ones_over_time() {
    let a = series(&[(0, 1.0), (10, 7.0)]);
    let b = series(&[(0, 4.0), (20, 2.0)]);
    assert_eq!(
        run("MAX([a, b])", &[("a", a.clone()), ("b", b.clone())]),
        series(&[(0, 4.0), (10, 7.0), (20, 2.0)])
    );
    assert_eq!(
        run("SUM([a, b])", &[("a", a.clone()), ("b", b)]),
        series(&[(0, 5.0), (10, 7.0), (20, 2.0)])
    );
    assert_eq!(
        run("MAX(a)", &[("a", a)]),
        series(&[(0, 7.0), (10, 7.0), (20, 7.0)])
    );
}

#[test]
fn if_without_a_false_branch_leaves_periods_out() {
    let a = series(&[(0, 0.0), (10, 3.0)]);
    assert_eq!(run("IF(a, 5)", &[("a", a)]), series(&[(10, 5.0)]));
}

#[test]
fn reports_what_it_cannot_read() {
    assert!(matches!(parse("1 +"), Err(MathError::Syntax(_))));
    assert!(matches!(parse("(1"), Err(MathError::Syntax(_))));
    assert!(matches!(parse("1 $ 2"), Err(MathError::Syntax(_))));
    assert!(matches!(
        parse("ANOMALY_DETECTION_BAND(m1)"),
        Err(MathError::Unknown(_))
    ));
    let series = BTreeMap::new();
    let inputs = Inputs {
        series: &series,
        periods: &PERIODS,
    };
    assert!(matches!(
        evaluate(&parse("m1 * 2").unwrap(), &inputs),
        Err(MathError::Unknown(_))
    ));
    assert!(evaluate(&parse("IF(1)").unwrap(), &inputs).is_err());
}

#[test]
fn lists_the_ids_it_reads() {
    let expr = parse(FAILED_SHARE).unwrap();
    assert_eq!(
        expr.ids(),
        vec!["received", "received", "deleted", "received"]
    );
}

proptest! {
    /// The failed share is a percentage, and 0 wherever fewer than N were received.
    #[test]
    fn the_failed_share_stays_within_0_and_100(
        points in proptest::collection::vec((0u32..50, 0u32..50), 3),
    ) {
        let received: Series = points.iter().enumerate()
            .map(|(i, (r, _))| (PERIODS[i], f64::from(*r))).collect();
        // Never more deleted than received.
        let deleted: Series = points.iter().enumerate()
            .map(|(i, (r, d))| (PERIODS[i], f64::from((*d).min(*r)))).collect();
        let share = run(FAILED_SHARE, &[("received", received.clone()), ("deleted", deleted)]);
        for (t, v) in &share {
            prop_assert!((0.0..=100.0).contains(v));
            if received[t] < 10.0 { prop_assert_eq!(*v, 0.0); }
        }
        prop_assert_eq!(share.len(), 3);
    }

    /// Arithmetic matches f64 arithmetic on numbers.
    #[test]
    fn arithmetic_matches_floats(a in -1000i32..1000, b in 1i32..1000, c in -1000i32..1000) {
        let text = format!("{a} + {b} * ({c}) - {a} / {b}");
        let expected = f64::from(a) + f64::from(b) * f64::from(c) - f64::from(a) / f64::from(b);
        let got = run(&text, &[]);
        prop_assert!((got[&0] - expected).abs() < 1e-9);
    }

    /// Comparisons and logic give 1 or 0.
    #[test]
    fn comparisons_are_booleans(a in -5i32..5, b in -5i32..5) {
        for op in ["==", "!=", "<", "<=", ">", ">=", "AND", "OR"] {
            let v = run(&format!("{a} {op} {b}"), &[])[&0];
            prop_assert!(v == 0.0 || v == 1.0);
        }
    }
}

#[test]
fn diff_is_each_value_less_the_one_before() {
    let got = run(
        "IF(DIFF(in_flight) > 0, DIFF(in_flight), 0)",
        &[("in_flight", series(&[(0, 5.0), (10, 30.0), (20, 12.0)]))],
    );
    assert_eq!(got, series(&[(10, 25.0), (20, 0.0)]));
}
