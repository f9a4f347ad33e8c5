//! The operator command's library: finding a deployed breaker by its stack name
//! ([`locate`]) and the text it prints ([`render`]). The demo (`cargo xtask demo`) uses both,
//! so its live view is the command's `watch`.

pub mod locate;
pub mod render;
