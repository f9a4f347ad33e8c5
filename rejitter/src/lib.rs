//! The rejitter's pure core: spreads a recovered queue's backlog with random delays.
//!
//! After the breaker closes, the backlog would hit the recovered service all at once. The
//! rejitter Lambda reads it and re-sends each message with a random `DelaySeconds`, turning the
//! burst into a trickle. This crate decides everything about that re-send ([`plan::plan`]) with
//! no AWS SDK and no I/O, so it can be tested exhaustively; the handler only sends.
//!
//! Standard queues only: FIFO queues cannot delay single messages ([`config`]).

pub mod attributes;
pub mod batch;
pub mod config;
pub mod delay;
pub mod plan;
pub mod size;

pub use attributes::{AttributeError, AttributeValue, OutAttribute, MARKER};
pub use batch::pack;
pub use config::{Config, ConfigError};
pub use delay::DelayRange;
pub use plan::{plan, Outgoing, RejectReason, Rejected};
