//! The rejitter: spreads a recovered queue's backlog with random delays.
//!
//! Not built yet (issue 4). This crate is a placeholder in the workspace layout only; nothing
//! is deployed from it and no template references it.
