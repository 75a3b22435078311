//! ApiVersions (key 18): which APIs and versions this server accepts, built from the registry
//! ([`super::HANDLERS`]) and nothing else.
//!
//! - An unknown version is answered before decoding (see [`super::Incoming`]) with the **v0**
//!   response, error UNSUPPORTED_VERSION and the full list, as Kafka does; clients then retry with
//!   the highest version in the list.
//! - v3+ responses carry no tagged fields: kafka-protocol leaves out `SupportedFeatures`,
//!   `FinalizedFeaturesEpoch`, `FinalizedFeatures` and `ZkMigrationReady` at their defaults, and
//!   librdkafka 2.0.2 (Debian's kcat 1.7.1) fails to parse responses that carry them.
//! - Produce is listed from version 0 although versions 0–2 are refused (see
//!   [`super::produce::ADVERTISED_MIN_VERSION`]).
//! - v3+ requests name the client software; Kafka answers INVALID_REQUEST when name or version do
//!   not match `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`, and so does Jet.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

use super::{produce, Ctx, HANDLERS};

/// The API key.
pub const API_KEY: ApiKey = ApiKey::ApiVersions;
/// Versions 0–4, all kafka-protocol knows.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 4 };

/// Answers an ApiVersions request.
pub async fn handle(
    _ctx: &Ctx,
    header: &RequestHeader,
    req: ApiVersionsRequest,
) -> ApiVersionsResponse {
    if header.request_api_version >= 3
        && !(is_valid_software_field(&req.client_software_name)
            && is_valid_software_field(&req.client_software_version))
    {
        return ApiVersionsResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    }
    ApiVersionsResponse::default().with_api_keys(supported_api_keys())
}

/// The response to an ApiVersions request at a version this server does not know (sent as v0).
pub fn unsupported_version_response() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(supported_api_keys())
}

/// Every registered API with the versions it is advertised with, by api key as Kafka lists them.
fn supported_api_keys() -> Vec<ApiVersion> {
    let mut keys: Vec<ApiVersion> = HANDLERS
        .iter()
        .map(|(key, range)| {
            let min = if *key == produce::API_KEY {
                produce::ADVERTISED_MIN_VERSION
            } else {
                range.min
            };
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(min)
                .with_max_version(range.max)
        })
        .collect();
    keys.sort_by_key(|k| k.api_key);
    keys
}

/// Kafka's check on `ClientSoftwareName` and `ClientSoftwareVersion`.
fn is_valid_software_field(s: &str) -> bool {
    let b = s.as_bytes();
    let (Some(first), Some(last)) = (b.first(), b.last()) else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    #[test]
    fn lists_every_registered_api_once_with_produce_from_zero() {
        let keys = supported_api_keys();
        assert_eq!(keys.len(), HANDLERS.len());
        for (key, range) in HANDLERS {
            let listed = keys
                .iter()
                .find(|k| k.api_key == *key as i16)
                .expect("listed");
            assert_eq!(listed.max_version, range.max);
        }
        let produce = keys.iter().find(|k| k.api_key == 0).expect("produce");
        assert_eq!((produce.min_version, produce.max_version), (0, 13));
        assert!(keys.windows(2).all(|w| w[0].api_key < w[1].api_key));
    }

    #[test]
    fn v3_response_has_no_tagged_fields() {
        let resp = ApiVersionsResponse::default().with_api_keys(supported_api_keys());
        let mut buf = bytes::BytesMut::new();
        resp.encode(&mut buf, 3).unwrap();
        // error code (2) + compact array length + entries of key, min, max (2 each) and an empty
        // tag buffer (1) + throttle time (4) + an empty top-level tag buffer (1).
        let n = supported_api_keys().len();
        assert_eq!(buf.len(), 2 + 1 + n * 7 + 4 + 1);
        assert_eq!(buf.last(), Some(&0));
    }

    #[test]
    fn software_fields_follow_kafkas_pattern() {
        for ok in [
            "librdkafka",
            "2.0.2",
            "apache-kafka-java",
            "a",
            "3.9.0-SNAPSHOT",
        ] {
            assert!(is_valid_software_field(ok), "{ok}");
        }
        for bad in ["", "-x", "x-", "a b", "v1_0", "."] {
            assert!(!is_valid_software_field(bad), "{bad}");
        }
    }
}
