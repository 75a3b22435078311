//! The handler registry, request decoding and the one dispatch `match`.
//!
//! Each handler file declares `API_KEY`, `VERSIONS` and
//! `async fn handle(ctx, header, request) -> response`. The `registry!` list below is the only
//! place a handler is named: from it come [`HANDLERS`] (which the ApiVersions response is built
//! from), the [`Request`] enum, its decoding, and [`dispatch`]. Adding an API is one line there.
//!
//! What happens to a request body, in order (each refusal closes the connection, as Kafka does):
//! 1. [`RequestPrefix`] reads api key, version and correlation id without decoding anything.
//! 2. An api key Kafka does not define, or one not in the registry: refused.
//! 3. A version outside the registry's range: ApiVersions is answered with the v0 error response
//!    (clients retry with v0); every other API is refused.
//! 4. The header and body are decoded by `kafka-protocol`; record batches stay `Bytes` slices of
//!    the frame.
//!
//! [`call`] is the same dispatch for callers inside the process (the HTTP REST proxy and console
//! in `jet-http`): they build a [`Request`] and get the handler's typed [`Response`] back, with no
//! encoding, so REST and Kafka clients take exactly one path through the handlers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use jet_protocol::frame::{self, RequestPrefix};
use jet_replication::{BrokerInfo, Node};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, ApiKey, ApiVersionsRequest, ApiVersionsResponse,
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteRecordsRequest, DeleteRecordsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeClusterRequest, DescribeClusterResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, DescribeProducersRequest, DescribeProducersResponse, FetchRequest,
    FetchResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader,
    ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, VersionRange};
// Group coordinator messages, by path so the registry lines below stay self-explanatory.
use kafka_protocol::messages as group_msg;

use crate::config::ServerConfig;
use crate::error::RequestError;
use crate::metrics::{self, ErrorCode};

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_producers;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;

/// What every handler gets besides its request: the node, the server settings and the
/// connection's two ends.
#[derive(Clone)]
pub struct Ctx {
    /// The replication layer: topics, partitions, appends and reads.
    pub node: Arc<Node>,
    /// The server settings.
    pub config: Arc<ServerConfig>,
    /// The local end of the connection (the address the client dialled).
    pub local_addr: SocketAddr,
    /// The client's address.
    pub peer_addr: SocketAddr,
    /// The name of the listener the client connected to ([`crate::DEFAULT_LISTENER`] for the
    /// default one and for callers inside the process): Metadata, DescribeCluster,
    /// FindCoordinator and leader hints report every broker at its address for this listener.
    pub listener: Arc<str>,
    /// The consumer group coordinator (one per server, shared by every connection).
    pub groups: Arc<jet_groups::Coordinator>,
}

impl Ctx {
    /// The host and port clients of this connection's listener are told to dial: the listener's
    /// advertised address when set, else its listen address, else — when listening on a wildcard
    /// address such as `0.0.0.0` — the local address this client dialled, which is the one
    /// address we know reaches us from where it stands.
    pub fn advertised(&self) -> (String, i32) {
        let (listen, advertise) = self.config.listener(&self.listener);
        advertised_addr(listen, advertise, self.local_addr)
    }

    /// Where clients reach broker `node_id`: this node at [`Ctx::advertised`], another live node
    /// at the client address it publishes in gossip for this connection's listener (its default
    /// listener's when it publishes none by that name). `None` for a node gossip does not see.
    pub fn broker_endpoint(&self, node_id: u64) -> Option<BrokerEndpoint> {
        if node_id == self.node.config().node_id {
            let (host, port) = self.advertised();
            return Some(BrokerEndpoint {
                node_id: node_id as i32,
                host,
                port,
                rack: self.config.rack.clone(),
            });
        }
        self.node.broker(node_id).map(|b| self.endpoint_of(&b))
    }

    /// Another broker's endpoint for this connection's listener.
    fn endpoint_of(&self, b: &BrokerInfo) -> BrokerEndpoint {
        let (host, port) = b.endpoint(&self.listener);
        BrokerEndpoint {
            node_id: b.node_id as i32,
            host: host.to_string(),
            port,
            rack: b.rack.clone(),
        }
    }

    /// Every live broker, this one first.
    pub fn live_brokers(&self) -> Vec<BrokerEndpoint> {
        let me = self.node.config().node_id;
        let mut out: Vec<BrokerEndpoint> = self.broker_endpoint(me).into_iter().collect();
        out.extend(
            self.node
                .other_brokers()
                .into_iter()
                .filter(|b| b.node_id != me)
                .map(|b| self.endpoint_of(&b)),
        );
        out
    }
}

/// A broker's client address, as Metadata, FindCoordinator and leader hints report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEndpoint {
    /// Broker (node) id.
    pub node_id: i32,
    /// Host to dial.
    pub host: String,
    /// Port to dial.
    pub port: i32,
    /// Rack, if set.
    pub rack: Option<String>,
}

fn advertised_addr(
    listen: SocketAddr,
    advertise: Option<&(String, u16)>,
    local_addr: SocketAddr,
) -> (String, i32) {
    if let Some((host, port)) = advertise {
        return (host.clone(), i32::from(*port));
    }
    let addr = if listen.ip().is_unspecified() {
        local_addr
    } else {
        listen
    };
    let host = match addr.ip() {
        // An IPv4 client on a dual-stack socket appears as ::ffff:a.b.c.d; clients must be given
        // the plain IPv4 form to dial.
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => v6.to_string(),
        },
        IpAddr::V4(v4) => v4.to_string(),
    };
    (host, i32::from(addr.port()))
}

/// What a handler returns, turned into the body to encode; `None` sends no response (a Produce
/// with acks=0).
trait Reply {
    type Body: Encodable;
    fn into_body(self) -> Option<Self::Body>;
}

impl Reply for Option<ProduceResponse> {
    type Body = ProduceResponse;
    fn into_body(self) -> Option<ProduceResponse> {
        self
    }
}

/// Declares the registry: one line per API, `module: Variant(Request => Response)`.
macro_rules! registry {
    ($($module:ident : $variant:ident($request:ty => $response:ty)),* $(,)?) => {
        /// Every API this server answers and the versions it accepts, from each handler file's
        /// `API_KEY` and `VERSIONS`. The ApiVersions response is built from this list.
        pub const HANDLERS: &[(ApiKey, VersionRange)] = &[
            $(($module::API_KEY, $module::VERSIONS)),*
        ];

        /// A decoded request for one of the registered APIs.
        #[derive(Debug)]
        pub enum Request {
            $(
                #[doc = concat!("A `", stringify!($variant), "` request.")]
                $variant($request),
            )*
        }

        impl Request {
            fn decode(api_key: ApiKey, version: i16, body: &mut Bytes) -> Result<Request, RequestError> {
                $(
                    if api_key == $module::API_KEY {
                        return Ok(Request::$variant(decode_body(body, version)?));
                    }
                )*
                Err(RequestError::UnsupportedApi(api_key as i16))
            }
        }

        /// The typed response of one of the registered APIs, as [`call`] returns it.
        #[derive(Debug)]
        pub enum Response {
            $(
                #[doc = concat!("A `", stringify!($variant), "` response.")]
                $variant($response),
            )*
        }

        /// Runs `request` through its handler in-process and returns the typed response, or
        /// `None` when the API sends none (Produce with acks=0). Counted in the request metrics
        /// like a request from a socket. `header` must name the request's API and a version in
        /// its registered range; the handlers read the version from it.
        pub async fn call(ctx: &Ctx, header: &RequestHeader, request: Request) -> Option<Response> {
            let received = Instant::now();
            match request {
                $(Request::$variant(req) => {
                    let reply = $module::handle(ctx, header, req).await;
                    metrics::record_request(header, reply.error_code(), received);
                    reply.into_body().map(Response::$variant)
                })*
            }
        }

        $(
            impl Reply for $response {
                type Body = $response;
                fn into_body(self) -> Option<$response> {
                    Some(self)
                }
            }
        )*

        /// Runs the request's handler and encodes its response into one frame (size prefix,
        /// header, body), or `None` when the API sends no response.
        pub async fn dispatch(
            ctx: &Ctx,
            header: &RequestHeader,
            request: Request,
        ) -> Result<Option<BytesMut>, RequestError> {
            let received = Instant::now();
            match request {
                $(Request::$variant(req) => {
                    let reply = $module::handle(ctx, header, req).await;
                    metrics::record_request(header, reply.error_code(), received);
                    encode_reply(header, reply)
                })*
            }
        }
    };
}

registry! {
    api_versions: ApiVersions(ApiVersionsRequest => ApiVersionsResponse),
    metadata: Metadata(MetadataRequest => MetadataResponse),
    produce: Produce(ProduceRequest => ProduceResponse),
    fetch: Fetch(FetchRequest => FetchResponse),
    list_offsets: ListOffsets(ListOffsetsRequest => ListOffsetsResponse),
    offset_for_leader_epoch: OffsetForLeaderEpoch(
        kafka_protocol::messages::OffsetForLeaderEpochRequest
            => kafka_protocol::messages::OffsetForLeaderEpochResponse
    ),
    create_topics: CreateTopics(CreateTopicsRequest => CreateTopicsResponse),
    delete_topics: DeleteTopics(DeleteTopicsRequest => DeleteTopicsResponse),
    create_partitions: CreatePartitions(CreatePartitionsRequest => CreatePartitionsResponse),
    delete_records: DeleteRecords(DeleteRecordsRequest => DeleteRecordsResponse),
    describe_configs: DescribeConfigs(DescribeConfigsRequest => DescribeConfigsResponse),
    alter_configs: AlterConfigs(AlterConfigsRequest => AlterConfigsResponse),
    incremental_alter_configs:
        IncrementalAlterConfigs(IncrementalAlterConfigsRequest => IncrementalAlterConfigsResponse),
    describe_cluster: DescribeCluster(DescribeClusterRequest => DescribeClusterResponse),
    init_producer_id: InitProducerId(InitProducerIdRequest => InitProducerIdResponse),
    describe_producers: DescribeProducers(DescribeProducersRequest => DescribeProducersResponse),
    find_coordinator: FindCoordinator(group_msg::FindCoordinatorRequest => group_msg::FindCoordinatorResponse),
    join_group: JoinGroup(group_msg::JoinGroupRequest => group_msg::JoinGroupResponse),
    sync_group: SyncGroup(group_msg::SyncGroupRequest => group_msg::SyncGroupResponse),
    heartbeat: Heartbeat(group_msg::HeartbeatRequest => group_msg::HeartbeatResponse),
    leave_group: LeaveGroup(group_msg::LeaveGroupRequest => group_msg::LeaveGroupResponse),
    offset_commit: OffsetCommit(group_msg::OffsetCommitRequest => group_msg::OffsetCommitResponse),
    offset_fetch: OffsetFetch(group_msg::OffsetFetchRequest => group_msg::OffsetFetchResponse),
    offset_delete: OffsetDelete(group_msg::OffsetDeleteRequest => group_msg::OffsetDeleteResponse),
    describe_groups: DescribeGroups(group_msg::DescribeGroupsRequest => group_msg::DescribeGroupsResponse),
    list_groups: ListGroups(group_msg::ListGroupsRequest => group_msg::ListGroupsResponse),
    delete_groups: DeleteGroups(group_msg::DeleteGroupsRequest => group_msg::DeleteGroupsResponse),
}

/// The versions this server accepts for `api_key`, if it serves the API at all.
pub fn versions(api_key: ApiKey) -> Option<VersionRange> {
    HANDLERS
        .iter()
        .find(|(key, _)| *key == api_key)
        .map(|(_, range)| *range)
}

/// A request body turned into something the server can act on.
// Boxing the large variant would cost an allocation per request for nothing: an `Incoming` is
// built once and moved straight into the request's future.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Incoming {
    /// A request of a registered API at a supported version.
    Request {
        /// Its header.
        header: RequestHeader,
        /// Its body.
        request: Request,
    },
    /// ApiVersions at a version this server does not know. Kafka answers it with a v0 response
    /// carrying UNSUPPORTED_VERSION and the full list, without reading the body (whose format
    /// may be newer than anything it knows), and clients retry with a version from the list.
    UnsupportedApiVersions {
        /// The correlation id to answer with.
        correlation_id: i32,
    },
}

/// Decodes one request body (the bytes after the size prefix).
pub fn decode_request(mut body: Bytes) -> Result<Incoming, RequestError> {
    let prefix = RequestPrefix::parse(&body)?;
    let api_key = ApiKey::try_from(prefix.api_key)
        .map_err(|()| RequestError::UnknownApiKey(prefix.api_key))?;
    let range = versions(api_key).ok_or(RequestError::UnsupportedApi(prefix.api_key))?;
    if prefix.api_version < range.min || prefix.api_version > range.max {
        if api_key == ApiKey::ApiVersions {
            return Ok(Incoming::UnsupportedApiVersions {
                correlation_id: prefix.correlation_id,
            });
        }
        return Err(RequestError::UnsupportedVersion {
            api_key: prefix.api_key,
            api_version: prefix.api_version,
        });
    }
    let header_version = api_key.request_header_version(prefix.api_version);
    let header = RequestHeader::decode(&mut body, header_version)
        .map_err(|e| RequestError::Decode(format!("request header: {e:#}")))?;
    let request = Request::decode(api_key, prefix.api_version, &mut body)?;
    Ok(Incoming::Request { header, request })
}

/// Answers one decoded request: the encoded response frame, or `None` when none is sent.
pub async fn handle(ctx: &Ctx, incoming: Incoming) -> Result<Option<BytesMut>, RequestError> {
    match incoming {
        Incoming::Request { header, request } => dispatch(ctx, &header, request).await,
        Incoming::UnsupportedApiVersions { correlation_id } => encode_response(
            ApiKey::ApiVersions,
            0,
            correlation_id,
            &api_versions::unsupported_version_response(),
        )
        .map(Some),
    }
}

/// A request whose in-order part is done; [`finish`] completes it.
pub enum Started {
    /// Anything but Produce: nothing needed doing in order.
    Other(Incoming),
    /// A Produce whose appends are queued at their shards.
    Produce {
        /// Its header.
        header: RequestHeader,
        /// Its appends.
        pending: produce::Pending,
        /// When it was decoded, for the latency metric.
        received: Instant,
    },
}

/// The part of a request that must happen in arrival order, run by the connection before it
/// reads the next request: a Produce hands its appends to the shards here.
pub async fn start(ctx: &Ctx, incoming: Incoming) -> Started {
    match incoming {
        Incoming::Request {
            header,
            request: Request::Produce(req),
        } => {
            let received = Instant::now();
            let pending = produce::start(ctx, &header, req).await;
            Started::Produce {
                header,
                pending,
                received,
            }
        }
        other => Started::Other(other),
    }
}

/// The rest of a request, run concurrently with the connection's other requests.
pub async fn finish(ctx: &Ctx, started: Started) -> Result<Option<BytesMut>, RequestError> {
    match started {
        Started::Other(incoming) => handle(ctx, incoming).await,
        Started::Produce {
            header,
            pending,
            received,
        } => {
            let acks = pending.acks();
            let reply = pending.finish().await;
            metrics::record_request(&header, reply.error_code(), received);
            if acks != 0 && ctx.config.faults.drop_produce_response() {
                return Err(RequestError::InjectedFault);
            }
            encode_reply(&header, reply)
        }
    }
}

/// kafka-protocol reports errors as `anyhow::Error`; `{:#}` prints its whole context chain.
fn encode_err(e: impl std::fmt::Display) -> RequestError {
    RequestError::Encode(format!("{e:#}"))
}

fn decode_body<T: Decodable>(body: &mut Bytes, version: i16) -> Result<T, RequestError> {
    T::decode(body, version).map_err(|e| RequestError::Decode(format!("{e:#}")))
}

fn encode_reply<R: Reply>(
    header: &RequestHeader,
    reply: R,
) -> Result<Option<BytesMut>, RequestError> {
    let Some(body) = reply.into_body() else {
        return Ok(None);
    };
    let api_key = ApiKey::try_from(header.request_api_key)
        .map_err(|()| RequestError::UnknownApiKey(header.request_api_key))?;
    encode_response(
        api_key,
        header.request_api_version,
        header.correlation_id,
        &body,
    )
    .map(Some)
}

/// Encodes a whole response frame — size prefix, response header, body — into one buffer sized
/// exactly, so the connection writes it with one write and nothing reallocates.
pub fn encode_response<B: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &B,
) -> Result<BytesMut, RequestError> {
    let header_version = api_key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = frame::SIZE_PREFIX_LEN
        + header.compute_size(header_version).map_err(encode_err)?
        + body.compute_size(version).map_err(encode_err)?;
    let mut buf = BytesMut::with_capacity(size);
    let start = frame::begin_frame(&mut buf);
    header
        .encode(&mut buf, header_version)
        .map_err(encode_err)?;
    body.encode(&mut buf, version).map_err(encode_err)?;
    frame::finish_frame(&mut buf, start)?;
    Ok(buf)
}
#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

    fn body<R: Encodable>(api_key: ApiKey, version: i16, req: &R) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7);
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, api_key.request_header_version(version))
            .unwrap();
        req.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn every_registered_version_decodes() {
        for (key, range) in HANDLERS {
            for version in range.min..=range.max {
                let encoded = match key {
                    ApiKey::ApiVersions => body(*key, version, &ApiVersionsRequest::default()),
                    ApiKey::Metadata => body(*key, version, &MetadataRequest::default()),
                    ApiKey::Produce => body(*key, version, &ProduceRequest::default()),
                    ApiKey::Fetch => body(*key, version, &FetchRequest::default()),
                    ApiKey::ListOffsets => body(*key, version, &ListOffsetsRequest::default()),
                    // Handlers added by other files: their decode is covered by their own tests.
                    _ => continue,
                };
                match decode_request(encoded) {
                    Ok(Incoming::Request { header, .. }) => {
                        assert_eq!(header.correlation_id, 7, "{key:?} v{version}")
                    }
                    other => panic!("{key:?} v{version}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn refusals_before_decoding() {
        let unknown = Bytes::from_static(&[0x27, 0x0f, 0, 0, 0, 0, 0, 1]);
        assert!(matches!(
            decode_request(unknown),
            Err(RequestError::UnknownApiKey(9999))
        ));
        let not_served = Bytes::from_static(&[0, 55, 0, 0, 0, 0, 0, 1]);
        assert!(matches!(
            decode_request(not_served),
            Err(RequestError::UnsupportedApi(55))
        ));
        let metadata_v99 = Bytes::from_static(&[0, 3, 0, 99, 0, 0, 0, 1]);
        assert!(matches!(
            decode_request(metadata_v99),
            Err(RequestError::UnsupportedVersion {
                api_key: 3,
                api_version: 99
            })
        ));
        let produce_v2 = Bytes::from_static(&[0, 0, 0, 2, 0, 0, 0, 1]);
        assert!(matches!(
            decode_request(produce_v2),
            Err(RequestError::UnsupportedVersion {
                api_key: 0,
                api_version: 2
            })
        ));
        let api_versions_v9 = Bytes::from_static(&[0, 18, 0, 9, 0, 0, 0, 5, 1, 2, 3]);
        assert!(matches!(
            decode_request(api_versions_v9),
            Ok(Incoming::UnsupportedApiVersions { correlation_id: 5 })
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(&[0, 18, 0])),
            Err(RequestError::Frame(_))
        ));
    }

    #[test]
    fn truncated_bodies_are_decode_errors() {
        let full = body(ApiKey::Metadata, 12, &MetadataRequest::default());
        for cut in 8..full.len() {
            assert!(
                decode_request(full.slice(..cut)).is_err(),
                "metadata cut at {cut} decoded"
            );
        }
    }

    /// A 16-byte Metadata v0 request claiming 2^31-1 topics. Upstream kafka-protocol 0.18
    /// pre-allocates the claimed array and the allocation failure aborts the whole process; the
    /// vendored copy (crates/vendor/kafka-protocol) refuses lengths beyond the bytes remaining.
    #[test]
    fn huge_array_claims_are_refused_not_allocated() {
        let body = Bytes::from_static(&[
            0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0, 0,
        ]);
        assert!(decode_request(body).is_err());
        // The same with a flexible version's compact array (unsigned varint length 2^32-1).
        let body = Bytes::from_static(&[
            0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0,
        ]);
        assert!(decode_request(body).is_err());
    }

    #[test]
    fn advertised_address_rules() {
        let mut config = ServerConfig::new("0.0.0.0:9092".parse().unwrap(), "c");
        config.listeners.push(crate::ListenerConfig {
            name: "external".into(),
            listen: "0.0.0.0:19092".parse().unwrap(),
            advertise: None,
        });
        let at = |config: &ServerConfig, name: &str, local: SocketAddr| {
            let (listen, advertise) = config.listener(name);
            advertised_addr(listen, advertise, local)
        };
        let local: SocketAddr = "10.1.2.3:9092".parse().unwrap();
        assert_eq!(at(&config, "kafka", local), ("10.1.2.3".into(), 9092));
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:9092".parse().unwrap();
        assert_eq!(at(&config, "kafka", mapped), ("10.1.2.3".into(), 9092));
        config.listen = "127.0.0.1:9093".parse().unwrap();
        assert_eq!(at(&config, "kafka", local), ("127.0.0.1".into(), 9093));
        config.advertise = Some(("kafka.example".into(), 19092));
        assert_eq!(at(&config, "kafka", local), ("kafka.example".into(), 19092));
        // A named listener on a wildcard address: the address this client dialled.
        let dialled: SocketAddr = "172.17.0.2:19092".parse().unwrap();
        assert_eq!(
            at(&config, "external", dialled),
            ("172.17.0.2".into(), 19092)
        );
        config.listeners[0].advertise = Some(("127.0.0.1".into(), 29092));
        assert_eq!(
            at(&config, "external", dialled),
            ("127.0.0.1".into(), 29092)
        );
        // An unknown name is the default listener.
        assert_eq!(at(&config, "nope", local), ("kafka.example".into(), 19092));
    }
}
