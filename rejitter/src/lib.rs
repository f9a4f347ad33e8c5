//! The rejitter: spreads a recovered queue's backlog with random delays.
//!
//! After the breaker closes, the backlog would hit the recovered service all at once. The
//! rejitter Lambda reads it and re-sends each message with a random `DelaySeconds`, turning the
//! burst into a trickle. A pure core decides everything about that re-send ([`plan::plan`],
//! [`marker`], [`metrics`], and the modules they use) with no AWS SDK and no I/O, so it can be
//! tested exhaustively; [`sender`] is the only SQS adapter (it also looks up the queue's URL
//! and attributes from its ARN, once per process), [`queues`] keeps one per source queue (the
//! deployment's and its attachments') and [`handler`] wires one invocation.
//!
//! Standard queues only: FIFO queues cannot delay single messages ([`config`]).

pub mod attributes;
pub mod batch;
pub mod config;
pub mod delay;
pub mod handler;
pub mod marker;
pub mod metrics;
pub mod plan;
pub mod queues;
pub mod sender;
pub mod size;

/// The JSON log setup every Lambda of the breaker shares.
pub use controller::logging;

pub use attributes::{AttributeError, AttributeValue, OutAttribute, MARKER};
pub use batch::{pack, pack_within};
pub use config::{Config, ConfigError};
pub use delay::DelayRange;
pub use handler::{handle, HandlerError, Outcome};
pub use marker::{already_rejittered, RESEND_DELAY_SECONDS};
pub use metrics::{emf_line, Counts};
pub use plan::{plan, Outgoing, RejectReason, Rejected};
pub use queues::Queues;
pub use sender::{Queue, QueueInfo, QueueLookupError};
