//! DescribeCluster (key 60), versions 0–2: the cluster id, the controller and the brokers.
//!
//! The brokers are the live nodes (this one at [`Ctx::advertised`], the others at the client
//! address they publish in gossip), with their racks; the controller is the metadata shard's
//! leader. Nothing is ever fenced, so `include_fenced_brokers` (v2) changes nothing and
//! `is_fenced` is false.
//!
//! The Kafka listener is a broker endpoint: a request for CONTROLLERS (v1+ `endpoint_type` 2)
//! answers MISMATCHED_ENDPOINT_TYPE and an unknown type UNSUPPORTED_ENDPOINT_TYPE, as a Kafka
//! broker does. `cluster_authorized_operations` is Kafka's "not asked" value unless asked for;
//! then, as Kafka without an authorizer, every cluster operation.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeClusterRequest, DescribeClusterResponse, RequestHeader,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use super::Ctx;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::DescribeCluster;
/// Versions 0–2, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 0, max: 2 };

/// Kafka's `EndpointType` ids.
const ENDPOINT_BROKERS: i8 = 1;
const ENDPOINT_CONTROLLERS: i8 = 2;

/// The schema's default: operations were not asked for.
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;

/// Cluster operations a client may perform, as Kafka reports them without an authorizer
/// (bit n = ACL operation n): CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9,
/// DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12.
const CLUSTER_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

/// Answers a DescribeCluster request.
pub async fn handle(
    ctx: &Ctx,
    header: &RequestHeader,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let version = header.request_api_version;
    let response = DescribeClusterResponse::default()
        .with_throttle_time_ms(0)
        .with_endpoint_type(ENDPOINT_BROKERS);
    if req.endpoint_type != ENDPOINT_BROKERS {
        // v0 has no endpoint type on the wire (it always decodes as BROKERS); Kafka answers
        // UNSUPPORTED_VERSION there, which cannot happen here but keeps the table whole.
        let (error, message) = match req.endpoint_type {
            _ if version == 0 => (
                ResponseError::UnsupportedVersion,
                format!("Unsupported endpoint type {}", req.endpoint_type),
            ),
            ENDPOINT_CONTROLLERS => (
                ResponseError::MismatchedEndpointType,
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER"
                    .to_string(),
            ),
            other => (
                ResponseError::UnsupportedEndpointType,
                format!("Unsupported endpoint type {other}"),
            ),
        };
        return response
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message)));
    }
    let brokers = ctx
        .live_brokers()
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(StrBytes::from_string(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(StrBytes::from_string))
                .with_is_fenced(false)
        })
        .collect();
    let controller = ctx.node.controller_id().map_or(-1, |c| c as i32);
    response
        .with_error_code(0)
        .with_error_message(None)
        .with_cluster_id(StrBytes::from_string(ctx.config.cluster_id.clone()))
        .with_controller_id(BrokerId(controller))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
            CLUSTER_OPERATIONS
        } else {
            OPERATIONS_NOT_ASKED
        })
}
