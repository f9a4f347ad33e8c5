//! The operator command's library: finding a deployed breaker by its stack name
//! ([`locate`]) and the consumers it guards ([`fleet`]), reading them ([`status`], [`watch`],
//! [`history`]), acting on them ([`actions`]) and the text it prints ([`render`]). Every AWS
//! read goes through the controller's adapters; the decisions are the controller's core.
//! The demo (`cargo xtask demo`) uses `locate` and `watch`, so its live view is the
//! command's `watch`.

pub mod actions;
pub mod error;
pub mod fleet;
pub mod history;
pub mod locate;
pub mod render;
pub mod status;
pub mod watch;

pub use error::OperatorError;
