//! Before a step of an open circuit acts: is the circuit still this execution's, and is the
//! consumer's mapping still off? Someone else may have ended it meanwhile: a person or a
//! deploy enabled the mapping, deleted it, or the circuit changed hands.

use super::Context;
use crate::adapters::mapping::{self, Mapping};
use crate::adapters::store::Ownership;
use crate::circuit::{Circuit, MappingSnapshot};
use crate::error::StepError;

pub enum Hold {
    /// The circuit is this execution's and the mapping is off: act on `snapshot` (what the
    /// breaker recorded at open, never the step's input) and judge with `mapping` (now).
    Mine {
        snapshot: Box<MappingSnapshot>,
        mapping: Mapping,
    },
    /// Someone else ended the circuit; why.
    Elsewhere(String),
}

pub async fn hold(ctx: &Context, circuit: &Circuit) -> Result<Hold, StepError> {
    let record = match ctx
        .store()
        .ownership(&circuit.mapping.uuid, &circuit.execution)
        .await?
    {
        Ownership::Open(record) => record,
        Ownership::Released(record) => {
            return Ok(Hold::Elsewhere(format!(
                "this execution already ended the circuit ({})",
                record.state
            )))
        }
        Ownership::Other(owner) if owner.is_empty() => {
            return Ok(Hold::Elsewhere(
                "no circuit is recorded for this mapping".into(),
            ))
        }
        Ownership::Other(owner) => {
            return Ok(Hold::Elsewhere(format!(
                "execution {owner} holds the circuit now"
            )))
        }
    };
    // What the breaker recorded at open, never the step's input.
    let snapshot = record.snapshot.clone().ok_or_else(|| {
        StepError::Fatal(format!(
            "the circuit item of mapping {} has no mapping snapshot",
            record.mapping_id
        ))
    })?;
    match mapping::get(&ctx.clients.lambda, &snapshot.uuid).await {
        Ok(now) if now.state == "Enabled" || now.state == "Enabling" => {
            Ok(Hold::Elsewhere(format!(
                "the consumer's mapping {} was enabled outside the breaker",
                snapshot.uuid
            )))
        }
        Ok(mapping) => Ok(Hold::Mine {
            snapshot: Box::new(snapshot),
            mapping,
        }),
        Err(StepError::MappingDeleted { mapping }) => Ok(Hold::Elsewhere(format!(
            "the consumer's mapping {mapping} was deleted"
        ))),
        Err(e) => Err(e),
    }
}
