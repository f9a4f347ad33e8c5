//! AWS SDK clients pointed at the emulator, and stack outputs.

use crate::{emulator::Emulator, sam::REGION};
use anyhow::{anyhow, Context, Result};
use aws_config::{Region, SdkConfig};
use std::collections::HashMap;

/// SDK configuration for the emulator: its endpoint, dummy static credentials.
pub async fn config(emulator: &Emulator) -> SdkConfig {
    controller::sdk::defaults()
        .region(Region::new(REGION))
        .endpoint_url(emulator.endpoint())
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "xtask",
        ))
        .load()
        .await
}

/// The outputs of a deployed CloudFormation stack, by key.
pub async fn stack_outputs(config: &SdkConfig, stack: &str) -> Result<HashMap<String, String>> {
    let cfn = aws_sdk_cloudformation::Client::new(config);
    let described = cfn
        .describe_stacks()
        .stack_name(stack)
        .send()
        .await
        .with_context(|| format!("describing stack {stack}"))?;
    let found = described
        .stacks()
        .first()
        .ok_or_else(|| anyhow!("stack {stack} not found"))?;
    Ok(found
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect())
}
