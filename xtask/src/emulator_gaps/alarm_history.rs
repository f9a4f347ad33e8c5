//! Every alarm transition, in order, from DescribeAlarmHistory, as pure functions: the bridge
//! delivers an event for each, so an alarm that goes OK -> ALARM -> OK between two looks still
//! produces both events (comparing polled states would see no change).

use super::alarm_evaluation::AlarmState;
use super::alarm_events::StateRecord;
use serde_json::Value;

/// One `StateUpdate` history item.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub alarm: String,
    pub from: AlarmState,
    pub to: StateRecord,
}

/// Reads a `StateUpdate` item's `HistoryData` (`{"oldState":{"stateValue":..},
/// "newState":{"stateValue":..,"stateReason":..,"stateReasonData":{..}}}`).
pub fn parse(alarm: &str, timestamp_ms: i64, history_data: &str) -> Option<Transition> {
    let data: Value = serde_json::from_str(history_data).ok()?;
    let state = |side: &str| AlarmState::parse(data[side]["stateValue"].as_str()?);
    let new = &data["newState"];
    let reason_data = match &new["stateReasonData"] {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    };
    Some(Transition {
        alarm: alarm.to_string(),
        from: state("oldState")?,
        to: StateRecord {
            value: state("newState")?,
            reason: new["stateReason"].as_str().unwrap_or_default().to_string(),
            reason_data,
            timestamp_ms,
        },
    })
}

/// How far the bridge has read the history: items up to `at_ms`, and how many of those
/// stamped exactly `at_ms` (several transitions can share a millisecond).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at_ms: i64,
    pub seen_at: usize,
}

impl Cursor {
    pub fn starting_at(at_ms: i64) -> Cursor {
        Cursor { at_ms, seen_at: 0 }
    }

    /// The items of `items` (timestamp, item; oldest first, as read from a little before
    /// `at_ms`) not read yet; moves the cursor past them.
    pub fn advance<T>(&mut self, items: Vec<(i64, T)>) -> Vec<T> {
        let mut at_cursor = 0;
        let mut last = None;
        let mut fresh = Vec::new();
        for (at, item) in items {
            if at < self.at_ms {
                continue;
            }
            if at == self.at_ms {
                at_cursor += 1;
                if at_cursor <= self.seen_at {
                    continue;
                }
            }
            match last {
                Some((t, n)) if t == at => last = Some((t, n + 1)),
                _ => last = Some((at, 1)),
            }
            fresh.push(item);
        }
        match last {
            Some((at, _)) if at == self.at_ms => self.seen_at = at_cursor,
            Some((at, n)) => {
                *self = Cursor {
                    at_ms: at,
                    seen_at: n,
                }
            }
            None => {}
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_the_emulators_history_data() {
        let data = r#"{"version":"1.0","oldState":{"stateValue":"OK"},"newState":{"stateValue":"ALARM","stateReason":"Threshold Crossed","stateReasonData":{"version":"1.0","period":10}}}"#;
        let t = parse("a", 5, data).unwrap();
        assert_eq!((t.from, t.to.value), (AlarmState::Ok, AlarmState::Alarm));
        assert_eq!(t.to.reason, "Threshold Crossed");
        assert_eq!(t.to.timestamp_ms, 5);
        let reason_data: Value = serde_json::from_str(&t.to.reason_data.unwrap()).unwrap();
        assert_eq!(reason_data["period"], 10);
        let plain = r#"{"oldState":{"stateValue":"ALARM"},"newState":{"stateValue":"OK","stateReason":"circuit closed"}}"#;
        assert_eq!(parse("a", 0, plain).unwrap().to.reason_data, None);
        assert_eq!(parse("a", 0, "{}"), None);
    }

    #[test]
    fn reads_each_item_once_even_within_one_millisecond() {
        let mut cursor = Cursor::starting_at(100);
        assert_eq!(
            cursor.advance(vec![(90, "old"), (100, "a"), (100, "b")]),
            vec!["a", "b"]
        );
        assert_eq!(
            cursor,
            Cursor {
                at_ms: 100,
                seen_at: 2
            }
        );
        // A third item in the same millisecond arrives later.
        assert_eq!(
            cursor.advance(vec![(100, "a"), (100, "b"), (100, "c")]),
            vec!["c"]
        );
        assert_eq!(
            cursor.advance(vec![(100, "a"), (100, "b"), (100, "c"), (120, "d")]),
            vec!["d"]
        );
        assert_eq!(
            cursor,
            Cursor {
                at_ms: 120,
                seen_at: 1
            }
        );
        assert!(cursor.advance(vec![(100, "a"), (120, "d")]).is_empty());
    }

    proptest! {
        /// Read in any number of overlapping looks, an append-only history yields every
        /// item exactly once, in order.
        #[test]
        fn every_item_once_in_order(
            gaps in proptest::collection::vec(0i64..3, 1..40),
            looks in proptest::collection::vec(0usize..40, 1..10),
        ) {
            let mut at = 1000;
            let history: Vec<(i64, usize)> = gaps.iter().enumerate().map(|(i, g)| { at += g; (at, i) }).collect();
            let mut cursor = Cursor::starting_at(1000);
            let mut read = Vec::new();
            let mut looks = looks.clone();
            looks.sort_unstable();
            looks.push(history.len());
            for upto in looks {
                let upto = upto.min(history.len());
                // The emulator answers from a second before the cursor.
                let answer: Vec<_> = history[..upto].iter().copied()
                    .filter(|(t, _)| *t >= cursor.at_ms - 1000).collect();
                read.extend(cursor.advance(answer));
            }
            prop_assert_eq!(read, (0..history.len()).collect::<Vec<_>>());
        }
    }
}
