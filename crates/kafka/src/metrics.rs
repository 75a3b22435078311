//! Request, connection and byte metrics of the Kafka server, through the `metrics` facade.
//!
//! Nothing here depends on an exporter: without an installed recorder (unit tests, the bench's
//! null broker) every call is a no-op. The broker installs the Prometheus recorder of
//! `jet-http`, which renders these at `GET /metrics`. Names follow Prometheus conventions
//! (`jet_` prefix, `_total` counters, `_seconds` and `_bytes` units); docs/http.md lists them.
//!
//! The `error` label of a request is one Kafka error code per response: the response's
//! top-level code when it has one and it is not NONE, else the first non-zero code of its topics,
//! partitions, groups or resources, else 0. A request that fails for one partition out of many is
//! therefore counted once, under that partition's code: enough to see that errors happen and
//! which, without a label per partition.

use std::time::Instant;

use kafka_protocol::messages::{self as m, ApiKey, RequestHeader};

/// Requests answered, by `api`, `version` and `error` (a Kafka error code; 0 is none).
pub const REQUESTS_TOTAL: &str = "jet_kafka_requests_total";
/// Time from decode to response, by `api`.
pub const REQUEST_DURATION_SECONDS: &str = "jet_kafka_request_duration_seconds";
/// Record-batch bytes appended by Produce, by `topic` (counted once the append committed).
pub const PRODUCED_BYTES_TOTAL: &str = "jet_kafka_produced_bytes_total";
/// Record-batch bytes returned by Fetch, by `topic`.
pub const FETCHED_BYTES_TOTAL: &str = "jet_kafka_fetched_bytes_total";
/// Kafka client connections open now.
pub const CONNECTIONS: &str = "jet_kafka_connections";
/// Kafka client connections accepted since start.
pub const CONNECTIONS_TOTAL: &str = "jet_kafka_connections_accepted_total";

/// The one Kafka error code a response is counted under (see the module docs).
pub trait ErrorCode {
    /// 0 when the response carries no error.
    fn error_code(&self) -> i16;
}

/// The first non-zero code of an iterator of codes, or 0.
fn first(codes: impl IntoIterator<Item = i16>) -> i16 {
    codes.into_iter().find(|c| *c != 0).unwrap_or(0)
}

/// Responses with a top-level `error_code` and nothing nested worth looking at.
macro_rules! top_level {
    ($($ty:ty),* $(,)?) => {$(
        impl ErrorCode for $ty {
            fn error_code(&self) -> i16 {
                self.error_code
            }
        }
    )*};
}

top_level!(
    m::ApiVersionsResponse,
    m::FindCoordinatorResponse,
    m::JoinGroupResponse,
    m::SyncGroupResponse,
    m::HeartbeatResponse,
    m::LeaveGroupResponse,
    m::ListGroupsResponse,
    m::DescribeClusterResponse,
    m::InitProducerIdResponse,
);

/// Responses whose codes are one level down: `$field[].error_code`.
macro_rules! per_item {
    ($($ty:ty => $field:ident),* $(,)?) => {$(
        impl ErrorCode for $ty {
            fn error_code(&self) -> i16 {
                first(self.$field.iter().map(|x| x.error_code))
            }
        }
    )*};
}

per_item!(
    m::CreateTopicsResponse => topics,
    m::DeleteTopicsResponse => responses,
    m::CreatePartitionsResponse => results,
    m::DescribeConfigsResponse => results,
    m::AlterConfigsResponse => responses,
    m::IncrementalAlterConfigsResponse => responses,
    m::DescribeGroupsResponse => groups,
    m::DeleteGroupsResponse => results,
);

/// Responses whose codes are per partition: `$field[].partitions[].error_code`, after a
/// top-level code when there is one.
macro_rules! per_partition {
    ($($ty:ty => $field:ident . $parts:ident $(, top $top:ident)?);* $(;)?) => {$(
        impl ErrorCode for $ty {
            fn error_code(&self) -> i16 {
                $(if self.$top != 0 { return self.$top; })?
                first(self.$field.iter().flat_map(|t| t.$parts.iter().map(|p| p.error_code)))
            }
        }
    )*};
}

per_partition!(
    m::ProduceResponse => responses.partition_responses;
    m::FetchResponse => responses.partitions, top error_code;
    m::ListOffsetsResponse => topics.partitions;
    m::DeleteRecordsResponse => topics.partitions;
    m::DescribeProducersResponse => topics.partitions;
    m::OffsetCommitResponse => topics.partitions;
    m::OffsetDeleteResponse => topics.partitions, top error_code;
);

impl ErrorCode for m::MetadataResponse {
    fn error_code(&self) -> i16 {
        if self.error_code != 0 {
            return self.error_code;
        }
        first(self.topics.iter().flat_map(|t| {
            std::iter::once(t.error_code).chain(t.partitions.iter().map(|p| p.error_code))
        }))
    }
}

impl ErrorCode for m::OffsetFetchResponse {
    fn error_code(&self) -> i16 {
        if self.error_code != 0 {
            return self.error_code;
        }
        let v0_to_7 = self
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code));
        let v8 = self.groups.iter().flat_map(|g| {
            std::iter::once(g.error_code).chain(
                g.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            )
        });
        first(v0_to_7.chain(v8))
    }
}

/// An acks=0 Produce has no response and counts as no error.
impl<T: ErrorCode> ErrorCode for Option<T> {
    fn error_code(&self) -> i16 {
        self.as_ref().map_or(0, ErrorCode::error_code)
    }
}

/// The `api` label: Kafka's name for the API (`Produce`, `Fetch`, …).
pub fn api_label(api_key: i16) -> String {
    match ApiKey::try_from(api_key) {
        Ok(key) => format!("{key:?}"),
        Err(()) => api_key.to_string(),
    }
}

/// Counts one answered request and its latency since `received`.
pub fn record_request(header: &RequestHeader, error_code: i16, received: Instant) {
    let api = api_label(header.request_api_key);
    metrics::counter!(
        REQUESTS_TOTAL,
        "api" => api.clone(),
        "version" => header.request_api_version.to_string(),
        "error" => error_code.to_string(),
    )
    .increment(1);
    metrics::histogram!(REQUEST_DURATION_SECONDS, "api" => api)
        .record(received.elapsed().as_secs_f64());
}

/// One open connection in the [`CONNECTIONS`] gauge, from creation until dropped — also when
/// its task is aborted at the end of the shutdown grace period, so the gauge cannot drift.
pub struct OpenConnection(());

impl OpenConnection {
    /// Counts a newly accepted connection.
    #[allow(clippy::new_without_default)]
    pub fn new() -> OpenConnection {
        metrics::counter!(CONNECTIONS_TOTAL).increment(1);
        metrics::gauge!(CONNECTIONS).increment(1.0);
        OpenConnection(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!(CONNECTIONS).decrement(1.0);
    }
}

/// Counts `bytes` of record batches appended to `topic`.
pub fn record_produced(topic: &str, bytes: usize) {
    metrics::counter!(PRODUCED_BYTES_TOTAL, "topic" => topic.to_string()).increment(bytes as u64);
}

/// Counts `bytes` of record batches returned from `topic`.
pub fn record_fetched(topic: &str, bytes: usize) {
    if bytes > 0 {
        metrics::counter!(FETCHED_BYTES_TOTAL, "topic" => topic.to_string())
            .increment(bytes as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };

    #[test]
    fn error_code_is_the_first_failure_or_zero() {
        let ok = PartitionProduceResponse::default();
        let bad = PartitionProduceResponse::default().with_error_code(3);
        let resp = m::ProduceResponse::default().with_responses(vec![
            TopicProduceResponse::default().with_partition_responses(vec![ok.clone()]),
            TopicProduceResponse::default().with_partition_responses(vec![ok, bad]),
        ]);
        assert_eq!(resp.error_code(), 3);
        assert_eq!(Some(resp).error_code(), 3);
        assert_eq!(None::<m::ProduceResponse>.error_code(), 0);
        assert_eq!(m::FetchResponse::default().error_code(), 0);
        assert_eq!(
            m::FetchResponse::default().with_error_code(70).error_code(),
            70
        );
        assert_eq!(
            m::HeartbeatResponse::default()
                .with_error_code(27)
                .error_code(),
            27
        );
    }

    #[test]
    fn api_labels_are_kafka_names() {
        assert_eq!(api_label(0), "Produce");
        assert_eq!(api_label(1), "Fetch");
        assert_eq!(api_label(9999), "9999");
    }
}
