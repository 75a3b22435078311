//! DescribeConfigs (key 32), versions 1–4: the effective configs of topics and of this broker.
//!
//! Kafka's `ConfigHelper.describeConfigs` is the model, resource type by resource type:
//! - TOPIC (2): every config in [`TOPIC_CONFIGS`] with its effective value. Its source is
//!   DYNAMIC_TOPIC_CONFIG when the topic sets it, STATIC_BROKER_CONFIG when a broker setting of
//!   this node stands in for Kafka's default (only `max.message.bytes`, from the node's batch
//!   limit, which is what the node enforces), DEFAULT_CONFIG otherwise. Synonyms list those three
//!   layers, most specific first, under the broker config's name below the topic's own. An
//!   invalid name answers INVALID_TOPIC_EXCEPTION, an unknown topic UNKNOWN_TOPIC_OR_PARTITION.
//! - BROKER (4) named with this node's id: the broker configs Jet honours ([`broker_entries`]),
//!   all read-only (Jet has no dynamic broker configs), STATIC_BROKER_CONFIG where a flag of this
//!   node differs from Kafka's default. Named `""` (the cluster-wide default): Kafka lists only
//!   the dynamic cluster defaults, and Jet has none, so the list is empty. Any other id, or a
//!   name that is not a number, answers INVALID_REQUEST as Kafka does.
//! - BROKER_LOGGER (8) named with this node's id: an empty list (Jet's log levels come from
//!   `RUST_LOG`, not from named loggers); an empty or foreign id answers INVALID_REQUEST.
//! - Anything else: INVALID_REQUEST ("Unsupported resource type").
//!
//! `configuration_keys` filters by name; null and empty both mean every config, as in Kafka.
//! Synonyms are sent only when asked for; documentation (v3+) only when asked for.
//!
//! The entry builders here are shared with CreateTopics, whose v5+ response lists the new
//! topic's configs the same way.

use std::collections::{BTreeMap, HashSet};

use jet_replication::metadata::validate_topic_name;
use jet_replication::topic_config::{ConfigDef, ConfigType, TOPIC_CONFIGS};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    ApiKey, DescribeConfigsRequest, DescribeConfigsResponse, RequestHeader,
};
use kafka_protocol::protocol::{StrBytes, VersionRange};
use kafka_protocol::ResponseError;

use super::create_topics::error_message;
use super::Ctx;
use crate::error_map;

/// The API key.
pub const API_KEY: ApiKey = ApiKey::DescribeConfigs;
/// Versions 1–4, all kafka-protocol decodes.
pub const VERSIONS: VersionRange = VersionRange { min: 1, max: 4 };

/// Kafka's `ConfigResource.Type` ids.
pub(crate) const RESOURCE_TOPIC: i8 = 2;
/// A broker (name: its id, or `""` for the cluster-wide default).
pub(crate) const RESOURCE_BROKER: i8 = 4;
/// A broker's loggers (name: its id).
pub(crate) const RESOURCE_BROKER_LOGGER: i8 = 8;

/// Kafka's `ConfigSource` ids.
pub(crate) const SOURCE_TOPIC: i8 = 1;
/// Set in the broker's static configuration (for Jet: its flags).
pub(crate) const SOURCE_STATIC_BROKER: i8 = 4;
/// Kafka's default.
pub(crate) const SOURCE_DEFAULT: i8 = 5;

/// Kafka's `ConfigType` ids for DescribeConfigs v3+ (those Jet's topic configs do not name).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

/// Kafka's default for `message.max.bytes`, the broker config behind `max.message.bytes`.
const KAFKA_MESSAGE_MAX_BYTES: &str = "1048588";

/// One layer a config's value may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Synonym {
    /// The config name at that layer (the broker config's name below the topic).
    pub name: &'static str,
    /// Its value there.
    pub value: Option<String>,
    /// Which layer (a `SOURCE_*` id).
    pub source: i8,
}

/// One config as DescribeConfigs (and CreateTopics v5+) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigEntry {
    /// The config name.
    pub name: &'static str,
    /// Its effective value.
    pub value: Option<String>,
    /// Where the effective value comes from (a `SOURCE_*` id).
    pub source: i8,
    /// True when it cannot be altered.
    pub read_only: bool,
    /// Kafka's type id.
    pub config_type: i8,
    /// One line of documentation.
    pub doc: &'static str,
    /// Every layer that sets it, most specific first (the first one is the effective value).
    pub synonyms: Vec<Synonym>,
}

impl ConfigEntry {
    /// An entry whose value and source are those of its most specific synonym, or `fallback`
    /// (Kafka's default, possibly null) when no layer sets it.
    fn from_layers(
        name: &'static str,
        fallback: Option<String>,
        read_only: bool,
        config_type: i8,
        doc: &'static str,
        synonyms: Vec<Synonym>,
    ) -> ConfigEntry {
        let (value, source) = match synonyms.first() {
            Some(s) => (s.value.clone(), s.source),
            None => (fallback, SOURCE_DEFAULT),
        };
        ConfigEntry {
            name,
            value,
            source,
            read_only,
            config_type,
            doc,
            synonyms,
        }
    }

    fn into_result(
        self,
        include_synonyms: bool,
        include_documentation: bool,
    ) -> DescribeConfigsResourceResult {
        let synonyms = if include_synonyms {
            self.synonyms
                .into_iter()
                .map(|s| {
                    DescribeConfigsSynonym::default()
                        .with_name(StrBytes::from_static_str(s.name))
                        .with_value(s.value.map(StrBytes::from_string))
                        .with_source(s.source)
                })
                .collect()
        } else {
            Vec::new()
        };
        DescribeConfigsResourceResult::default()
            .with_name(StrBytes::from_static_str(self.name))
            .with_value(self.value.map(StrBytes::from_string))
            .with_read_only(self.read_only)
            .with_config_source(self.source)
            .with_is_sensitive(false)
            .with_synonyms(synonyms)
            .with_config_type(self.config_type)
            .with_documentation(include_documentation.then(|| StrBytes::from_static_str(self.doc)))
    }
}

/// True for the topic configs Kafka types as LIST, which IncrementalAlterConfigs may APPEND to
/// and SUBTRACT from. Jet types `cleanup.policy` as a string with a fixed set of values (so
/// that validation rejects unknown policies), but Kafka reports and edits it as a list.
pub(crate) fn is_list_config(def: &ConfigDef) -> bool {
    matches!(def.kind, ConfigType::List) || def.name == "cleanup.policy"
}

fn topic_config_type(def: &ConfigDef) -> i8 {
    if is_list_config(def) {
        TYPE_LIST
    } else {
        def.kind.kafka_code()
    }
}

/// The broker setting of this node that stands in for a topic config's Kafka default, when Jet
/// has one and it differs from that default: what the node enforces for topics that do not set
/// the config.
fn broker_override(ctx: &Ctx, def: &ConfigDef) -> Option<String> {
    match def.name {
        "max.message.bytes" => {
            Some(ctx.node.config().max_batch_bytes.to_string()).filter(|v| v != def.default)
        }
        _ => None,
    }
}

/// Every topic config with its effective value for a topic whose explicit configs are
/// `configs`, in [`TOPIC_CONFIGS`] order.
pub(crate) fn topic_entries(ctx: &Ctx, configs: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let broker_name = def.broker_synonym.unwrap_or(def.name);
            let mut synonyms = Vec::with_capacity(3);
            if let Some(v) = configs.get(def.name) {
                synonyms.push(Synonym {
                    name: def.name,
                    value: Some(v.clone()),
                    source: SOURCE_TOPIC,
                });
            }
            if let Some(v) = broker_override(ctx, def) {
                synonyms.push(Synonym {
                    name: broker_name,
                    value: Some(v),
                    source: SOURCE_STATIC_BROKER,
                });
            }
            synonyms.push(Synonym {
                name: broker_name,
                value: Some(def.default.to_string()),
                source: SOURCE_DEFAULT,
            });
            ConfigEntry::from_layers(
                def.name,
                Some(def.default.to_string()),
                false,
                topic_config_type(def),
                def.doc,
                synonyms,
            )
        })
        .collect()
}

/// One broker config: its value on this node and Kafka's default.
struct BrokerConfig {
    name: &'static str,
    value: Option<String>,
    default: Option<&'static str>,
    config_type: i8,
    doc: &'static str,
}

/// The broker configs Jet honours, with this node's values, sorted by name. All are read-only:
/// they come from the `jet` command line and cannot be changed while it runs.
pub(crate) fn broker_entries(ctx: &Ctx) -> Vec<ConfigEntry> {
    let node = ctx.node.config();
    let server = &ctx.config;
    let (host, port) = ctx.advertised();
    let node_id = ctx.node.node_id().to_string();
    let listener = format!("PLAINTEXT://{}", server.listen);
    let c = |name, value: Option<String>, default, config_type, doc| BrokerConfig {
        name,
        value,
        default,
        config_type,
        doc,
    };
    let s = |v: &str| Some(v.to_string());
    let mut configs = vec![
        c(
            "advertised.listeners",
            Some(format!("PLAINTEXT://{host}:{port}")),
            None,
            TYPE_STRING,
            "the address clients are told to dial",
        ),
        c(
            "auto.create.topics.enable",
            Some(server.auto_create_topics.to_string()),
            Some("true"),
            TYPE_BOOLEAN,
            "create unknown topics named in a Metadata request that allows it",
        ),
        c(
            "broker.id",
            Some(node_id.clone()),
            Some("-1"),
            TYPE_INT,
            "this node's id",
        ),
        c(
            "broker.rack",
            server.rack.clone(),
            None,
            TYPE_STRING,
            "this node's rack",
        ),
        c(
            "compression.type",
            s("producer"),
            Some("producer"),
            TYPE_STRING,
            "batches are stored as the producer compressed them",
        ),
        c(
            "default.replication.factor",
            Some(server.default_replication_factor.to_string()),
            Some("1"),
            TYPE_INT,
            "replication factor of topics created without one",
        ),
        c(
            "delete.topic.enable",
            s("true"),
            Some("true"),
            TYPE_BOOLEAN,
            "DeleteTopics is allowed",
        ),
        c(
            "listener.security.protocol.map",
            s("PLAINTEXT:PLAINTEXT"),
            Some("SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"),
            TYPE_STRING,
            "Jet serves PLAINTEXT only",
        ),
        c(
            "listeners",
            Some(listener),
            Some("PLAINTEXT://:9092"),
            TYPE_STRING,
            "the address the Kafka listener is bound to",
        ),
        c(
            "log.cleanup.policy",
            s("delete"),
            Some("delete"),
            TYPE_LIST,
            "default retention policy of topics",
        ),
        c(
            "log.dirs",
            Some(node.data_dir.display().to_string()),
            None,
            TYPE_STRING,
            "the directory of this node's RocksDB",
        ),
        c(
            "log.message.timestamp.type",
            s("CreateTime"),
            Some("CreateTime"),
            TYPE_STRING,
            "default timestamp type of topics",
        ),
        c(
            "log.retention.bytes",
            s("-1"),
            Some("-1"),
            TYPE_LONG,
            "default retention.bytes of topics",
        ),
        c(
            "log.retention.check.interval.ms",
            Some(node.retention_check_interval.as_millis().to_string()),
            Some("300000"),
            TYPE_LONG,
            "how often retention is enforced",
        ),
        c(
            "log.retention.hours",
            s("168"),
            Some("168"),
            TYPE_INT,
            "default retention of topics, in hours",
        ),
        c(
            "log.retention.minutes",
            None,
            None,
            TYPE_INT,
            "default retention of topics, in minutes (unset: log.retention.hours)",
        ),
        c(
            "log.retention.ms",
            None,
            None,
            TYPE_LONG,
            "default retention of topics, in milliseconds (unset: log.retention.hours)",
        ),
        c(
            "max.connections",
            Some(server.max_connections.to_string()),
            Some("2147483647"),
            TYPE_INT,
            "most client connections open at once",
        ),
        c(
            "message.max.bytes",
            Some(node.max_batch_bytes.to_string()),
            Some(KAFKA_MESSAGE_MAX_BYTES),
            TYPE_INT,
            "largest record batch accepted for topics that do not set max.message.bytes",
        ),
        c(
            "min.insync.replicas",
            s("1"),
            Some("1"),
            TYPE_INT,
            "default min.insync.replicas of topics",
        ),
        c(
            "node.id",
            Some(node_id),
            Some("-1"),
            TYPE_INT,
            "this node's id",
        ),
        c(
            "num.partitions",
            Some(server.default_partitions.to_string()),
            Some("1"),
            TYPE_INT,
            "partitions of topics created without a count",
        ),
        c(
            "process.roles",
            s("broker,controller"),
            Some(""),
            TYPE_LIST,
            "every Jet node is a broker and may vote in the metadata shard",
        ),
        c(
            "socket.request.max.bytes",
            Some(server.max_request_bytes.to_string()),
            Some("104857600"),
            TYPE_INT,
            "largest request accepted",
        ),
        c(
            "unclean.leader.election.enable",
            s("false"),
            Some("false"),
            TYPE_BOOLEAN,
            "Raft never elects an unclean leader",
        ),
    ];
    configs.sort_by_key(|c| c.name);
    configs
        .into_iter()
        .map(|c| {
            let mut synonyms = Vec::with_capacity(2);
            if c.value.is_some() && c.value.as_deref() != c.default {
                synonyms.push(Synonym {
                    name: c.name,
                    value: c.value.clone(),
                    source: SOURCE_STATIC_BROKER,
                });
            }
            if let Some(d) = c.default {
                synonyms.push(Synonym {
                    name: c.name,
                    value: Some(d.to_string()),
                    source: SOURCE_DEFAULT,
                });
            }
            ConfigEntry::from_layers(c.name, c.value, true, c.config_type, c.doc, synonyms)
        })
        .collect()
}

/// Answers a DescribeConfigs request.
pub async fn handle(
    ctx: &Ctx,
    _header: &RequestHeader,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .iter()
        .map(|r| describe(ctx, r, req.include_synonyms, req.include_documentation))
        .collect();
    DescribeConfigsResponse::default()
        .with_throttle_time_ms(0)
        .with_results(results)
}

fn describe(
    ctx: &Ctx,
    resource: &DescribeConfigsResource,
    include_synonyms: bool,
    include_documentation: bool,
) -> DescribeConfigsResult {
    let result = DescribeConfigsResult::default()
        .with_resource_type(resource.resource_type)
        .with_resource_name(resource.resource_name.clone())
        .with_error_message(None);
    match entries(ctx, resource) {
        Ok(entries) => {
            // Null and empty both mean every key (Kafka's ConfigHelper reads them alike).
            let keys: Option<HashSet<&str>> = resource
                .configuration_keys
                .as_ref()
                .filter(|keys| !keys.is_empty())
                .map(|keys| keys.iter().map(|k| k.as_str()).collect());
            let configs = entries
                .into_iter()
                .filter(|e| keys.as_ref().is_none_or(|k| k.contains(e.name)))
                .map(|e| e.into_result(include_synonyms, include_documentation))
                .collect();
            result.with_error_code(0).with_configs(configs)
        }
        Err((error, message)) => result
            .with_error_code(error)
            .with_error_message(message.map(StrBytes::from_string))
            .with_configs(Vec::new()),
    }
}

/// The entries of one resource, or its error code and message.
fn entries(
    ctx: &Ctx,
    resource: &DescribeConfigsResource,
) -> Result<Vec<ConfigEntry>, (i16, Option<String>)> {
    let name = resource.resource_name.as_str();
    match resource.resource_type {
        RESOURCE_TOPIC => {
            validate_topic_name(name)
                .map_err(|e| (error_map::error_code(&e), Some(error_message(&e))))?;
            let meta = ctx.node.metadata();
            // Kafka sends no message for an unknown topic here.
            let topic = meta
                .topic(name)
                .ok_or((ResponseError::UnknownTopicOrPartition.code(), None))?;
            Ok(topic_entries(ctx, &topic.configs))
        }
        RESOURCE_BROKER if name.is_empty() => Ok(Vec::new()),
        RESOURCE_BROKER => {
            check_broker_id(ctx, name)
                .map_err(|m| (ResponseError::InvalidRequest.code(), Some(m)))?;
            Ok(broker_entries(ctx))
        }
        RESOURCE_BROKER_LOGGER => {
            if name.is_empty() {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    Some("Broker id must not be empty".into()),
                ));
            }
            check_broker_id(ctx, name)
                .map_err(|m| (ResponseError::InvalidRequest.code(), Some(m)))?;
            Ok(Vec::new())
        }
        other => Err((
            ResponseError::InvalidRequest.code(),
            Some(format!("Unsupported resource type: {other}")),
        )),
    }
}

/// Checks that a BROKER or BROKER_LOGGER resource names this node (Kafka's messages).
pub(crate) fn check_broker_id(ctx: &Ctx, name: &str) -> Result<(), String> {
    let id: i32 = name
        .parse()
        .map_err(|_| format!("Broker id must be an integer, but it is: {name}"))?;
    let own = ctx.node.node_id();
    if id == own {
        Ok(())
    } else {
        Err(format!(
            "Unexpected broker id, expected {own} or empty string, but received {name}"
        ))
    }
}
