//! Topic configs: the names Jet accepts, Kafka's defaults, and validation.
//!
//! Jet enforces `retention.ms`, `retention.bytes`, `max.message.bytes` and
//! `message.timestamp.type`; the others are accepted and reported so that tools that set them
//! (and DescribeConfigs readers) see what Kafka would show.

use std::collections::BTreeMap;

/// How a config value is typed, for validation and DescribeConfigs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    /// A boolean (`true`/`false`).
    Boolean,
    /// A 32-bit integer with a lower bound.
    Int(i64),
    /// A 64-bit integer with a lower bound.
    Long(i64),
    /// A floating point number between 0 and 1.
    Double,
    /// A string; `Some` lists the allowed values.
    String(Option<&'static [&'static str]>),
    /// A comma-separated list.
    List,
}

impl ConfigType {
    /// The Kafka `ConfigType` code used by DescribeConfigs v3+ (BOOLEAN=1, STRING=2, INT=3,
    /// SHORT=4, LONG=5, DOUBLE=6, LIST=7).
    pub fn kafka_code(&self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String(_) => 2,
            ConfigType::Int(_) => 3,
            ConfigType::Long(_) => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
        }
    }
}

/// One known topic config.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    /// The config name.
    pub name: &'static str,
    /// Kafka's default value (as the broker reports it).
    pub default: &'static str,
    /// Its type.
    pub kind: ConfigType,
    /// The broker config it defaults from, reported as the synonym.
    pub broker_synonym: Option<&'static str>,
    /// Its documentation line.
    pub doc: &'static str,
}

const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
const CLEANUP: &[&str] = &["delete", "compact", "compact,delete", "delete,compact"];
const COMPRESSION: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

/// Every topic config Jet knows, in Kafka's order of importance.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        default: "delete",
        kind: ConfigType::String(Some(CLEANUP)),
        broker_synonym: Some("log.cleanup.policy"),
        doc:
            "delete (retention by time and size), compact (keep the newest record per key), or both",
    },
    ConfigDef {
        name: "compression.type",
        default: "producer",
        kind: ConfigType::String(Some(COMPRESSION)),
        broker_synonym: Some("compression.type"),
        doc: "batches are stored as the producer compressed them",
    },
    ConfigDef {
        name: "delete.retention.ms",
        default: "86400000",
        kind: ConfigType::Long(0),
        broker_synonym: Some("log.cleaner.delete.retention.ms"),
        doc: "how long delete tombstones are kept",
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        default: "60000",
        kind: ConfigType::Long(0),
        broker_synonym: Some("log.segment.delete.delay.ms"),
        doc: "delay before deleting a file",
    },
    ConfigDef {
        name: "flush.messages",
        default: "9223372036854775807",
        kind: ConfigType::Long(1),
        broker_synonym: Some("log.flush.interval.messages"),
        doc: "messages between forced flushes",
    },
    ConfigDef {
        name: "flush.ms",
        default: "9223372036854775807",
        kind: ConfigType::Long(0),
        broker_synonym: Some("log.flush.interval.ms"),
        doc: "time between forced flushes",
    },
    ConfigDef {
        name: "index.interval.bytes",
        default: "4096",
        kind: ConfigType::Int(0),
        broker_synonym: Some("log.index.interval.bytes"),
        doc: "index entry interval",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        default: "9223372036854775807",
        kind: ConfigType::Long(1),
        broker_synonym: Some("log.cleaner.max.compaction.lag.ms"),
        doc: "maximum compaction lag",
    },
    ConfigDef {
        name: "max.message.bytes",
        default: "1048588",
        kind: ConfigType::Int(0),
        broker_synonym: Some("message.max.bytes"),
        doc: "largest record batch accepted",
    },
    ConfigDef {
        name: "message.timestamp.after.max.ms",
        default: "9223372036854775807",
        kind: ConfigType::Long(0),
        broker_synonym: Some("log.message.timestamp.after.max.ms"),
        doc: "accepted timestamp skew into the future",
    },
    ConfigDef {
        name: "message.timestamp.before.max.ms",
        default: "9223372036854775807",
        kind: ConfigType::Long(0),
        broker_synonym: Some("log.message.timestamp.before.max.ms"),
        doc: "accepted timestamp skew into the past",
    },
    ConfigDef {
        name: "message.timestamp.type",
        default: "CreateTime",
        kind: ConfigType::String(Some(TIMESTAMP_TYPES)),
        broker_synonym: Some("log.message.timestamp.type"),
        doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps batches at append",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        default: "0.5",
        kind: ConfigType::Double,
        broker_synonym: Some("log.cleaner.min.cleanable.ratio"),
        doc: "compaction trigger ratio",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        default: "0",
        kind: ConfigType::Long(0),
        broker_synonym: Some("log.cleaner.min.compaction.lag.ms"),
        doc: "minimum compaction lag",
    },
    ConfigDef {
        name: "min.insync.replicas",
        default: "1",
        kind: ConfigType::Int(1),
        broker_synonym: Some("min.insync.replicas"),
        doc: "replicas that must acknowledge acks=all writes",
    },
    ConfigDef {
        name: "preallocate",
        default: "false",
        kind: ConfigType::Boolean,
        broker_synonym: Some("log.preallocate"),
        doc: "preallocate segment files",
    },
    ConfigDef {
        name: "retention.bytes",
        default: "-1",
        kind: ConfigType::Long(-1),
        broker_synonym: Some("log.retention.bytes"),
        doc: "bytes kept per partition before the oldest batches are deleted; -1 for no limit",
    },
    ConfigDef {
        name: "retention.ms",
        default: "604800000",
        kind: ConfigType::Long(-1),
        broker_synonym: Some("log.retention.ms"),
        doc: "age after which batches are deleted; -1 for no limit",
    },
    ConfigDef {
        name: "segment.bytes",
        default: "1073741824",
        kind: ConfigType::Int(14),
        broker_synonym: Some("log.segment.bytes"),
        doc: "segment size (Jet stores batches individually)",
    },
    ConfigDef {
        name: "segment.index.bytes",
        default: "10485760",
        kind: ConfigType::Int(4),
        broker_synonym: Some("log.index.size.max.bytes"),
        doc: "index size",
    },
    ConfigDef {
        name: "segment.jitter.ms",
        default: "0",
        kind: ConfigType::Long(0),
        broker_synonym: Some("log.roll.jitter.ms"),
        doc: "segment roll jitter",
    },
    ConfigDef {
        name: "segment.ms",
        default: "604800000",
        kind: ConfigType::Long(1),
        broker_synonym: Some("log.roll.ms"),
        doc: "segment roll time",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        default: "false",
        kind: ConfigType::Boolean,
        broker_synonym: Some("unclean.leader.election.enable"),
        doc: "Raft never elects an unclean leader",
    },
    ConfigDef {
        name: "message.downconversion.enable",
        default: "true",
        kind: ConfigType::Boolean,
        broker_synonym: Some("log.message.downconversion.enable"),
        doc: "down-conversion for old consumers",
    },
];

/// The definition of `name`, if Jet knows it.
pub fn config_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one name and value; the error text says what is wrong.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let def = config_def(name).ok_or_else(|| format!("unknown topic config {name}"))?;
    let bad = || format!("invalid value {value:?} for {name}");
    match def.kind {
        ConfigType::Boolean => match value {
            "true" | "false" => Ok(()),
            _ => Err(bad()),
        },
        ConfigType::Int(min) => match value.trim().parse::<i32>() {
            Ok(v) if i64::from(v) >= min => Ok(()),
            _ => Err(bad()),
        },
        ConfigType::Long(min) => match value.trim().parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            _ => Err(bad()),
        },
        ConfigType::Double => match value.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            _ => Err(bad()),
        },
        ConfigType::String(Some(allowed)) => {
            if allowed.contains(&value) {
                Ok(())
            } else {
                Err(bad())
            }
        }
        ConfigType::String(None) | ConfigType::List => Ok(()),
    }
}

/// Checks a whole set of configs.
pub fn validate_all(configs: &BTreeMap<String, String>) -> Result<(), String> {
    configs.iter().try_for_each(|(k, v)| validate(k, v))
}

/// The effective value of `name` for a topic with these explicit configs.
pub fn effective<'a>(configs: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    configs
        .get(name)
        .map(String::as_str)
        .or_else(|| config_def(name).map(|d| d.default))
}

/// The effective value of an integer config (validated at creation, so parsing cannot fail for
/// known names).
pub fn effective_i64(configs: &BTreeMap<String, String>, name: &str) -> i64 {
    effective(configs, name)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

/// Whether a topic's `cleanup.policy` (Kafka's default `delete`) includes `policy`.
pub fn cleanup_policy_has(configs: &BTreeMap<String, String>, policy: &str) -> bool {
    effective(configs, "cleanup.policy")
        .unwrap_or("delete")
        .split(',')
        .any(|p| p.trim() == policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_table() {
        let cases = [
            ("retention.ms", "1000", true),
            ("retention.ms", "-1", true),
            ("retention.ms", "-2", false),
            ("retention.ms", "abc", false),
            ("retention.bytes", "1024", true),
            ("cleanup.policy", "delete", true),
            ("cleanup.policy", "shred", false),
            ("message.timestamp.type", "LogAppendTime", true),
            ("max.message.bytes", "99999999999", false),
            ("preallocate", "yes", false),
            ("no.such.config", "1", false),
        ];
        for (name, value, ok) in cases {
            assert_eq!(validate(name, value).is_ok(), ok, "{name}={value}");
        }
    }

    #[test]
    fn cleanup_policy_parts() {
        let with = |v: &str| BTreeMap::from([("cleanup.policy".to_string(), v.to_string())]);
        assert!(cleanup_policy_has(&BTreeMap::new(), "delete"));
        assert!(!cleanup_policy_has(&BTreeMap::new(), "compact"));
        assert!(cleanup_policy_has(&with("compact"), "compact"));
        assert!(!cleanup_policy_has(&with("compact"), "delete"));
        assert!(cleanup_policy_has(&with("compact,delete"), "delete"));
        assert!(cleanup_policy_has(&with("delete, compact"), "compact"));
    }

    #[test]
    fn effective_falls_back_to_default() {
        let mut c = BTreeMap::new();
        assert_eq!(effective_i64(&c, "retention.ms"), 604_800_000);
        c.insert("retention.ms".into(), "5".into());
        assert_eq!(effective_i64(&c, "retention.ms"), 5);
    }
}
