//! The keys each node publishes in chitchat, and parsing them back into typed values.
//!
//! | key | value | example |
//! |---|---|---|
//! | `node_id` | the Kafka broker id | `3` |
//! | `generation` | increases at every start | `1767312000123` |
//! | `peer_addr` | where the peer transport listens for this node | `10.0.0.3:9093` |
//! | `listener.<name>` | the client address of one named Kafka listener | `listener.external` = `broker3.example.com:19092` |
//! | `rack` | the node's rack; absent when it has none | `eu-west-1a` |
//! | `ready` | `true` once the node serves clients | `false` |
//! | `leader.<shard>` | the term of a shard this node leads, and optionally `;` and its in-sync replicas; deleted when it stops leading | `leader.7` = `12` or `12;1,2,3` |
//!
//! One key per led shard rather than one compact key: chitchat sends only changed keys, so a
//! leadership change costs one small key, not the whole list. Unknown keys are ignored, so a
//! newer node may publish more.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::{NodeId, ShardId, Term};

pub(crate) const KEY_NODE_ID: &str = "node_id";
pub(crate) const KEY_GENERATION: &str = "generation";
pub(crate) const KEY_PEER_ADDR: &str = "peer_addr";
pub(crate) const KEY_RACK: &str = "rack";
pub(crate) const KEY_READY: &str = "ready";
/// The nodes the cluster was formed with (`id,id,…`), published once the node runs: how a new
/// node started with `--bootstrap-expect` tells a cluster it belongs to from one it must join.
pub(crate) const KEY_FORMED_WITH: &str = "formed_with";
pub(crate) const LISTENER_PREFIX: &str = "listener.";
pub(crate) const LEADER_PREFIX: &str = "leader.";

/// What one node publishes, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) node_id: NodeId,
    pub(crate) generation: u64,
    pub(crate) peer_addr: SocketAddr,
    pub(crate) listeners: BTreeMap<String, String>,
    pub(crate) rack: Option<String>,
    pub(crate) ready: bool,
    pub(crate) leads: Vec<(ShardId, Term)>,
    /// In-sync replicas of led shards, as the leader computes them.
    pub(crate) isr: BTreeMap<ShardId, Vec<NodeId>>,
    /// The nodes the cluster was formed with, sorted; empty until the node runs.
    pub(crate) formed_with: Vec<NodeId>,
}

impl Published {
    /// The key-values a node starts with.
    pub(crate) fn to_key_values(&self) -> Vec<(String, String)> {
        let mut kvs = vec![
            (KEY_NODE_ID.to_owned(), self.node_id.to_string()),
            (KEY_GENERATION.to_owned(), self.generation.to_string()),
            (KEY_PEER_ADDR.to_owned(), self.peer_addr.to_string()),
            (KEY_READY.to_owned(), self.ready.to_string()),
        ];
        if let Some(rack) = &self.rack {
            kvs.push((KEY_RACK.to_owned(), rack.clone()));
        }
        if !self.formed_with.is_empty() {
            kvs.push((
                KEY_FORMED_WITH.to_owned(),
                formed_with_value(&self.formed_with),
            ));
        }
        for (name, addr) in &self.listeners {
            kvs.push((listener_key(name), addr.clone()));
        }
        for (shard, term) in &self.leads {
            kvs.push((leader_key(*shard), leader_value(*term, self.isr.get(shard))));
        }
        kvs
    }
}

/// `id,id,…`.
pub(crate) fn formed_with_value(members: &[NodeId]) -> String {
    let ids: Vec<String> = members.iter().map(|i| i.to_string()).collect();
    ids.join(",")
}

pub(crate) fn listener_key(name: &str) -> String {
    format!("{LISTENER_PREFIX}{name}")
}

pub(crate) fn leader_key(shard: ShardId) -> String {
    format!("{LEADER_PREFIX}{shard}")
}

/// `term`, or `term;id,id,…` with the shard's in-sync replicas.
pub(crate) fn leader_value(term: Term, isr: Option<&Vec<NodeId>>) -> String {
    match isr {
        Some(ids) if !ids.is_empty() => {
            let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
            format!("{term};{}", ids.join(","))
        }
        _ => term.to_string(),
    }
}

/// Reads a `leader.<shard>` value: the term and the in-sync replicas, if given.
fn parse_leader_value(value: &str) -> Option<(Term, Option<Vec<NodeId>>)> {
    match value.split_once(';') {
        None => Some((value.parse().ok()?, None)),
        Some((term, ids)) => {
            let ids: Option<Vec<NodeId>> = ids.split(',').map(|i| i.parse().ok()).collect();
            Some((term.parse().ok()?, Some(ids?)))
        }
    }
}

/// Whether `addr` is a `host:port` a client can dial (the host may be a name, or a bracketed
/// IPv6 address).
pub(crate) fn is_host_port(addr: &str) -> bool {
    match addr.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    }
}

/// The result of reading a node's keys.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// Every required key is there and valid.
    Complete(Published),
    /// A required key has not arrived yet: gossip delivers a node's keys over several rounds.
    Incomplete,
    /// A key is there but invalid: a bug or a stranger; the node is left out of the view.
    Malformed(String),
}

/// Reads a node's keys (deleted keys already left out by the caller).
pub(crate) fn parse<'a>(key_values: impl Iterator<Item = (&'a str, &'a str)>) -> Parsed {
    let mut node_id = None;
    let mut generation = None;
    let mut peer_addr = None;
    let mut ready = None;
    let mut rack = None;
    let mut listeners = BTreeMap::new();
    let mut leads = Vec::new();
    let mut isr = BTreeMap::new();
    let mut formed_with = Vec::new();
    for (key, value) in key_values {
        let bad = |what: &str| Parsed::Malformed(format!("{what}: key {key:?}, value {value:?}"));
        match key {
            KEY_NODE_ID => match value.parse::<NodeId>() {
                Ok(id) => node_id = Some(id),
                Err(_) => return bad("node id is not a number"),
            },
            KEY_GENERATION => match value.parse::<u64>() {
                Ok(g) => generation = Some(g),
                Err(_) => return bad("generation is not a number"),
            },
            KEY_PEER_ADDR => match value.parse::<SocketAddr>() {
                Ok(addr) => peer_addr = Some(addr),
                Err(_) => return bad("peer address is not ip:port"),
            },
            KEY_READY => match value {
                "true" => ready = Some(true),
                "false" => ready = Some(false),
                _ => return bad("readiness is not true or false"),
            },
            KEY_RACK => rack = Some(value.to_owned()),
            KEY_FORMED_WITH => {
                match value
                    .split(',')
                    .map(|id| id.parse::<NodeId>())
                    .collect::<Result<Vec<_>, _>>()
                {
                    Ok(ids) => formed_with = ids,
                    Err(_) => return bad("formed_with is not a list of node ids"),
                }
            }
            _ => {
                if let Some(name) = key.strip_prefix(LISTENER_PREFIX) {
                    if !is_host_port(value) {
                        return bad("listener address is not host:port");
                    }
                    listeners.insert(name.to_owned(), value.to_owned());
                } else if let Some(shard) = key.strip_prefix(LEADER_PREFIX) {
                    match (shard.parse::<ShardId>(), parse_leader_value(value)) {
                        (Ok(shard), Some((term, in_sync))) => {
                            leads.push((shard, term));
                            if let Some(ids) = in_sync {
                                isr.insert(shard, ids);
                            }
                        }
                        _ => return bad("leader key is not leader.<shard> = <term>[;<ids>]"),
                    }
                }
                // Any other key is from a newer node: ignored.
            }
        }
    }
    let (Some(node_id), Some(generation), Some(peer_addr), Some(ready)) =
        (node_id, generation, peer_addr, ready)
    else {
        return Parsed::Incomplete;
    };
    leads.sort_unstable();
    Parsed::Complete(Published {
        node_id,
        generation,
        peer_addr,
        listeners,
        rack,
        ready,
        leads,
        isr,
        formed_with,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Published {
        Published {
            node_id: 3,
            generation: 17,
            peer_addr: "127.0.0.1:9093".parse().unwrap(),
            listeners: BTreeMap::from([
                ("internal".to_owned(), "jet-3:9092".to_owned()),
                ("external".to_owned(), "[::1]:19092".to_owned()),
            ]),
            rack: Some("r1".to_owned()),
            ready: true,
            leads: vec![(1, 4), (9, 2)],
            isr: BTreeMap::from([(9, vec![3, 1, 2])]),
            formed_with: vec![1, 2, 3],
        }
    }

    #[test]
    fn published_keys_parse_back() {
        let published = sample();
        let kvs = published.to_key_values();
        let parsed = parse(kvs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(parsed, Parsed::Complete(published));
    }

    #[test]
    fn missing_required_key_is_incomplete_and_bad_values_are_malformed() {
        let kvs = sample().to_key_values();
        let without_peer = kvs.iter().filter(|(k, _)| k != KEY_PEER_ADDR);
        assert_eq!(
            parse(without_peer.map(|(k, v)| (k.as_str(), v.as_str()))),
            Parsed::Incomplete
        );
        for (key, value) in [
            (KEY_NODE_ID, "three"),
            (KEY_READY, "yes"),
            ("listener.x", "no-port"),
            ("leader.x", "1"),
            ("leader.1", "-1"),
            ("leader.1", "4;1,x"),
            ("leader.1", "4;"),
            (KEY_FORMED_WITH, "1,,2"),
            (KEY_FORMED_WITH, "1,x"),
        ] {
            let mut kvs = sample().to_key_values();
            kvs.retain(|(k, _)| k != key);
            kvs.push((key.to_owned(), value.to_owned()));
            assert!(
                matches!(
                    parse(kvs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                    Parsed::Malformed(_)
                ),
                "{key} = {value} should be malformed"
            );
        }
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let mut kvs = sample().to_key_values();
        kvs.push(("future.thing".to_owned(), "whatever".to_owned()));
        assert_eq!(
            parse(kvs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            Parsed::Complete(sample())
        );
    }
}
