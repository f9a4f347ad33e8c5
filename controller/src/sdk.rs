//! The AWS SDK configuration every binary of the breaker starts from: the SDK's defaults
//! (credentials, region, retries) with one HTTP client, hyper and rustls over ring.

use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_sqs::config::SharedHttpClient;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

/// The SDK's default loader with the breaker's HTTP client; the SDK carries no client of its
/// own (its features leave out `default-https-client`), so a configuration loaded another way
/// fails its first call.
pub fn defaults() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(http_client())
}

/// The breaker's HTTP client, for a client configured by hand.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration from `defaults` carries an HTTP client (no call made).
    #[tokio::test]
    async fn the_loaded_configuration_has_an_http_client() {
        let sdk = defaults()
            .region(aws_config::Region::new("eu-west-1"))
            .load()
            .await;
        assert!(sdk.http_client().is_some());
    }
}
