//! Driving the example consumer: its simulated outage switch and its configuration.

use crate::wait::eventually_every;
use anyhow::{Context, Result};
use aws_sdk_lambda::types::{Environment, LastUpdateStatus};
use std::time::Duration;

/// Sets `SHOULD_ERROR` on `function` (keeping its other variables) and waits until the
/// update is done.
pub async fn set_should_error(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    outage: bool,
) -> Result<()> {
    configure(
        lambda,
        function,
        &[("SHOULD_ERROR", outage.to_string())],
        None,
    )
    .await
}

/// Sets environment variables on `function` (keeping its others) and, if given, its timeout
/// in seconds; waits until the update is done. Makes no update that would change nothing (an
/// update restarts the function's warm instances).
pub async fn configure(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    variables: &[(&str, String)],
    timeout_seconds: Option<i32>,
) -> Result<()> {
    let current = lambda
        .get_function_configuration()
        .function_name(function)
        .send()
        .await
        .context("GetFunctionConfiguration")?;
    let mut vars = current
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default();
    let unchanged = variables
        .iter()
        .all(|(name, value)| vars.get(*name) == Some(value))
        && timeout_seconds.is_none_or(|t| current.timeout() == Some(t));
    if unchanged {
        return Ok(());
    }
    for (name, value) in variables {
        vars.insert(name.to_string(), value.clone());
    }
    lambda
        .update_function_configuration()
        .function_name(function)
        .environment(Environment::builder().set_variables(Some(vars)).build())
        .set_timeout(timeout_seconds)
        .send()
        .await
        .context("UpdateFunctionConfiguration")?;
    // A fifth of a second apart: the demo's outage and heal wait on it, and the emulator
    // finishes an update in well under a second.
    eventually_every(
        "the function update to finish",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let c = lambda
                .get_function_configuration()
                .function_name(function)
                .send()
                .await
                .context("GetFunctionConfiguration")?;
            Ok(matches!(
                c.last_update_status(),
                None | Some(LastUpdateStatus::Successful)
            )
            .then_some(()))
        },
    )
    .await
}
