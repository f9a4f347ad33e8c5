//! The queues the rejitter re-sends to: the deployment's consumer's (`QUEUE_ARN`) and each
//! attachment's whose stack maps the rejitter to its queue. A record goes back to the queue
//! it came from, never to another; what may be read and sent is the role's grants (one per
//! attachment), not a list here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lambda_events::event::sqs::SqsMessage;
use controller::core::QueueArn;

use crate::config::Config;
use crate::sender::Queue;

/// One [`Queue`] per source queue, built on first use and kept for the life of the process
/// (each looks its URL up once).
#[derive(Debug)]
pub struct Queues {
    client: aws_sdk_sqs::Client,
    home: Arc<Queue>,
    others: Mutex<HashMap<String, Arc<Queue>>>,
}

impl Queues {
    /// The configured queue and, on demand, the others. Makes no call.
    pub fn new(client: aws_sdk_sqs::Client, config: &Config) -> Queues {
        Queues {
            home: Arc::new(Queue::new(client.clone(), config)),
            client,
            others: Mutex::new(HashMap::new()),
        }
    }

    /// The configured queue (`QUEUE_ARN`).
    pub fn home(&self) -> &Queue {
        &self.home
    }

    /// The queue to re-send `record` to: its `eventSourceARN`'s if that is a standard SQS
    /// queue, else the configured one (whose handler then leaves the record on its queue,
    /// as from another queue).
    fn of(&self, record: &SqsMessage) -> Arc<Queue> {
        let Some(arn) = record.event_source_arn.as_deref() else {
            return Arc::clone(&self.home);
        };
        if arn == self.home.arn() {
            return Arc::clone(&self.home);
        }
        match QueueArn::parse(arn) {
            Ok(parts) if !parts.is_fifo() => {
                // A poisoned lock only means another invocation panicked mid-insert: the map
                // is still a valid cache.
                let mut others = self.others.lock().unwrap_or_else(|e| e.into_inner());
                Arc::clone(
                    others
                        .entry(arn.to_owned())
                        .or_insert_with(|| Arc::new(Queue::at(self.client.clone(), arn, &parts))),
                )
            }
            _ => Arc::clone(&self.home),
        }
    }

    /// `records` split by the queue each goes back to, each group in record order, the
    /// groups in the order of their first record.
    pub fn group(&self, records: &[SqsMessage]) -> Vec<(Arc<Queue>, Vec<SqsMessage>)> {
        let mut groups: Vec<(Arc<Queue>, Vec<SqsMessage>)> = Vec::new();
        for record in records {
            let queue = self.of(record);
            match groups.iter_mut().find(|(q, _)| q.arn() == queue.arn()) {
                Some((_, group)) => group.push(record.clone()),
                None => groups.push((queue, vec![record.clone()])),
            }
        }
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: &str = "arn:aws:sqs:us-east-1:123456789012:orders";
    const OTHER: &str = "arn:aws:sqs:us-east-1:123456789012:payments";

    fn queues() -> Queues {
        let config = Config::from_lookup(|k| (k == "QUEUE_ARN").then(|| HOME.to_owned()))
            .expect("valid configuration");
        let sdk = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .build();
        Queues::new(aws_sdk_sqs::Client::from_conf(sdk), &config)
    }

    fn record(id: &str, arn: Option<&str>) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.to_owned());
        m.event_source_arn = arn.map(str::to_owned);
        m
    }

    fn ids(group: &[SqsMessage]) -> Vec<&str> {
        group
            .iter()
            .filter_map(|m| m.message_id.as_deref())
            .collect()
    }

    #[test]
    fn each_record_goes_back_to_its_own_queue() {
        let q = queues();
        let records = [
            record("a", Some(OTHER)),
            record("b", Some(HOME)),
            record("c", Some(OTHER)),
        ];
        let groups = q.group(&records);
        let arns: Vec<&str> = groups.iter().map(|(q, _)| q.arn()).collect();
        assert_eq!(arns, [OTHER, HOME]);
        assert_eq!(ids(&groups[0].1), ["a", "c"]);
        assert_eq!(ids(&groups[1].1), ["b"]);
        assert_eq!(groups[0].0.name(), "payments");
        // The same queue, its lookup kept, on the next invocation.
        let again = q.group(&records[..1]);
        assert!(Arc::ptr_eq(&groups[0].0, &again[0].0));
    }

    #[test]
    fn a_record_with_no_usable_source_is_the_configured_queues_to_leave() {
        let q = queues();
        let records = [
            record("a", None),
            record("b", Some("not-an-arn")),
            record("c", Some("arn:aws:sqs:us-east-1:123456789012:orders.fifo")),
        ];
        let groups = q.group(&records);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].0.arn(), HOME);
        assert_eq!(ids(&groups[0].1), ["a", "b", "c"]);
    }
}
