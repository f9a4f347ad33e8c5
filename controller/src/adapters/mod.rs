//! Thin adapters over the AWS SDK: each turns a few SDK calls into one domain operation and
//! classifies failures as [`StepError`](crate::error::StepError)s. No decisions here.

pub mod alarm;
pub mod attachments;
pub mod consumer;
pub mod execution;
pub mod mapping;
pub mod queue;
pub mod signals;
pub mod store;

/// The AWS clients a step may use.
#[derive(Debug, Clone)]
pub struct Clients {
    pub sqs: aws_sdk_sqs::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sfn: aws_sdk_sfn::Client,
}

impl Clients {
    pub fn new(config: &aws_config::SdkConfig) -> Clients {
        Clients {
            sqs: aws_sdk_sqs::Client::new(config),
            lambda: aws_sdk_lambda::Client::new(config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(config),
            eventbridge: aws_sdk_eventbridge::Client::new(config),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            sfn: aws_sdk_sfn::Client::new(config),
        }
    }
}
