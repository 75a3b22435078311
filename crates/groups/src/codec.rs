//! The group records' keys and values, as stored in the `meta` column family through a shard's
//! Raft log.
//!
//! Keys (every one starts with `jet_storage::keys::META_GROUP_PREFIX`, `g`; strings are
//! length-prefixed rather than terminated, so any group or topic name is safe, `\0` included):
//! - group metadata: `g` · u16 group length · group · `m`
//! - committed offset: `g` · u16 group length · group · `o` · u16 topic length · topic ·
//!   i32 partition (big-endian)
//!
//! Values start with a format version byte; a record this code cannot read is skipped at restore
//! with a warning rather than stopping the broker.

use bytes::Bytes;
use jet_storage::keys::META_GROUP_PREFIX;

const VALUE_VERSION: u8 = 1;
const KIND_GROUP: u8 = b'm';
const KIND_OFFSET: u8 = b'o';

/// Longest group id or topic name a key can hold (Kafka strings are at most `i16::MAX` bytes).
pub const MAX_NAME_BYTES: usize = i16::MAX as usize;

/// A committed offset as stored and cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The next offset to consume.
    pub offset: i64,
    /// The leader epoch of the last consumed record, or -1.
    pub leader_epoch: i32,
    /// The client's metadata string ("" when it sent none).
    pub metadata: String,
    /// When the commit was made (ms since the epoch).
    pub commit_timestamp_ms: i64,
    /// OffsetCommit v1–v4 retention: when the offset expires, or -1 to follow the group rules.
    pub expire_timestamp_ms: i64,
}

/// A member as stored with its group's stable assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// The client id it joined with.
    pub client_id: String,
    /// The client's host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Its metadata for the group's chosen protocol (the consumer subscription).
    pub subscription: Bytes,
    /// Its assignment in the stored generation.
    pub assignment: Bytes,
}

/// A group's state as of its last completed rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    /// Protocol type (`consumer` for consumers), if a member ever joined.
    pub protocol_type: Option<String>,
    /// The chosen protocol (assignor), if the group has members.
    pub protocol_name: Option<String>,
    /// Generation.
    pub generation: i32,
    /// Leader member id.
    pub leader: Option<String>,
    /// When the group entered its current state (ms since the epoch): for an empty group, when it
    /// became empty, which is where offset retention counts from.
    pub state_timestamp_ms: i64,
    /// Members and their assignments.
    pub members: Vec<StoredMember>,
}

/// What a stored key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A group's metadata record.
    Group(String),
    /// A committed offset: group, topic, partition.
    Offset(String, String, i32),
}

fn put_name(out: &mut Vec<u8>, s: &str) {
    debug_assert!(s.len() <= MAX_NAME_BYTES);
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Every key of `group` starts with this.
pub fn group_prefix(group: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + group.len() + 1);
    k.push(META_GROUP_PREFIX);
    put_name(&mut k, group);
    k
}

/// The key of a group's metadata record.
pub fn group_key(group: &str) -> Vec<u8> {
    let mut k = group_prefix(group);
    k.push(KIND_GROUP);
    k
}

/// The key of a committed offset.
pub fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut k = group_prefix(group);
    k.push(KIND_OFFSET);
    put_name(&mut k, topic);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

/// Reads a key back, or `None` for a key this code did not write.
pub fn parse_key(key: &[u8]) -> Option<Key> {
    let mut r = Reader(key);
    if r.u8()? != META_GROUP_PREFIX {
        return None;
    }
    let group = r.name()?;
    let key = match r.u8()? {
        KIND_GROUP => Key::Group(group),
        KIND_OFFSET => {
            let topic = r.name()?;
            Key::Offset(group, topic, r.i32()?)
        }
        _ => return None,
    };
    r.0.is_empty().then_some(key)
}

/// Encodes a committed offset.
pub fn encode_offset(v: &OffsetValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(33 + v.metadata.len());
    out.push(VALUE_VERSION);
    out.extend_from_slice(&v.offset.to_be_bytes());
    out.extend_from_slice(&v.leader_epoch.to_be_bytes());
    out.extend_from_slice(&v.commit_timestamp_ms.to_be_bytes());
    out.extend_from_slice(&v.expire_timestamp_ms.to_be_bytes());
    put_bytes(&mut out, v.metadata.as_bytes());
    out
}

/// Decodes a committed offset.
pub fn decode_offset(bytes: &[u8]) -> Option<OffsetValue> {
    let mut r = Reader(bytes);
    if r.u8()? != VALUE_VERSION {
        return None;
    }
    let v = OffsetValue {
        offset: r.i64()?,
        leader_epoch: r.i32()?,
        commit_timestamp_ms: r.i64()?,
        expire_timestamp_ms: r.i64()?,
        metadata: r.string()?,
    };
    r.0.is_empty().then_some(v)
}

/// Encodes a group's metadata.
pub fn encode_group(v: &GroupValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(VALUE_VERSION);
    put_opt(&mut out, v.protocol_type.as_deref());
    put_opt(&mut out, v.protocol_name.as_deref());
    out.extend_from_slice(&v.generation.to_be_bytes());
    put_opt(&mut out, v.leader.as_deref());
    out.extend_from_slice(&v.state_timestamp_ms.to_be_bytes());
    out.extend_from_slice(&(v.members.len() as u32).to_be_bytes());
    for m in &v.members {
        put_bytes(&mut out, m.member_id.as_bytes());
        put_opt(&mut out, m.group_instance_id.as_deref());
        put_bytes(&mut out, m.client_id.as_bytes());
        put_bytes(&mut out, m.client_host.as_bytes());
        out.extend_from_slice(&m.session_timeout_ms.to_be_bytes());
        out.extend_from_slice(&m.rebalance_timeout_ms.to_be_bytes());
        put_bytes(&mut out, &m.subscription);
        put_bytes(&mut out, &m.assignment);
    }
    out
}

/// Decodes a group's metadata.
pub fn decode_group(bytes: &[u8]) -> Option<GroupValue> {
    let mut r = Reader(bytes);
    if r.u8()? != VALUE_VERSION {
        return None;
    }
    let protocol_type = r.opt()?;
    let protocol_name = r.opt()?;
    let generation = r.i32()?;
    let leader = r.opt()?;
    let state_timestamp_ms = r.i64()?;
    let count = r.u32()? as usize;
    // Each member takes at least 33 bytes: a count larger than the rest of the value is corrupt,
    // and must not size an allocation.
    if count > r.0.len() / 33 {
        return None;
    }
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        members.push(StoredMember {
            member_id: r.string()?,
            group_instance_id: r.opt()?,
            client_id: r.string()?,
            client_host: r.string()?,
            session_timeout_ms: r.i32()?,
            rebalance_timeout_ms: r.i32()?,
            subscription: Bytes::copy_from_slice(r.bytes()?),
            assignment: Bytes::copy_from_slice(r.bytes()?),
        });
    }
    r.0.is_empty().then_some(GroupValue {
        protocol_type,
        protocol_name,
        generation,
        leader,
        state_timestamp_ms,
        members,
    })
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_bytes(out, s.as_bytes());
        }
    }
}

/// A cursor over a value; every read is checked, so a short or corrupt value is `None`.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    fn name(&mut self) -> Option<String> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }

    fn opt(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.string()?)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_group_keys_share_the_prefix() {
        for group in ["", "g", "with\0nul", "ünï"] {
            assert_eq!(parse_key(&group_key(group)), Some(Key::Group(group.into())));
            let k = offset_key(group, "t\0x", -7);
            assert_eq!(
                parse_key(&k),
                Some(Key::Offset(group.into(), "t\0x".into(), -7))
            );
            assert!(k.starts_with(&group_prefix(group)));
            assert!(group_key(group).starts_with(&group_prefix(group)));
        }
        // "a" must not be a prefix match for "ab".
        assert!(!group_key("ab").starts_with(&group_prefix("a")));
        assert_eq!(parse_key(b"x"), None);
        assert_eq!(parse_key(&[b'g', 0, 5, b'a']), None);
        let mut trailing = group_key("g");
        trailing.push(0);
        assert_eq!(parse_key(&trailing), None);
    }

    #[test]
    fn values_round_trip() {
        let o = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp_ms: 1000,
            expire_timestamp_ms: -1,
        };
        assert_eq!(decode_offset(&encode_offset(&o)), Some(o));
        let g = GroupValue {
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            generation: 9,
            leader: Some("m1".into()),
            state_timestamp_ms: 5,
            members: vec![StoredMember {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 300_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::new(),
            }],
        };
        assert_eq!(decode_group(&encode_group(&g)), Some(g.clone()));
        let empty = GroupValue {
            members: vec![],
            protocol_name: None,
            leader: None,
            ..g
        };
        assert_eq!(decode_group(&encode_group(&empty)), Some(empty));
    }

    #[test]
    fn corrupt_values_are_none_not_panics() {
        let g = encode_group(&GroupValue {
            protocol_type: None,
            protocol_name: None,
            generation: 1,
            leader: None,
            state_timestamp_ms: 0,
            members: vec![],
        });
        for cut in 0..g.len() {
            assert_eq!(decode_group(&g[..cut]), None);
        }
        let mut huge = g.clone();
        let n = huge.len();
        huge[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode_group(&huge), None);
        assert_eq!(decode_offset(&[2]), None);
        assert_eq!(decode_offset(&[]), None);
    }
}
