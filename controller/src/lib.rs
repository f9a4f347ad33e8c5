//! The breaker's controller: one Lambda that runs every step of the circuit-breaker state
//! machine. A pure core decides; thin adapters talk to AWS; steps wire the two.

pub mod adapters;
pub mod circuit;
pub mod core;
pub mod error;
pub mod logging;
pub mod registration;
pub mod sdk;
pub mod steps;
