//! The one piece of the consumer embedded protocol the coordinator reads: the topics a member
//! subscribes to, from its `ConsumerProtocolSubscription` metadata. Kafka uses them to refuse
//! OffsetDelete of a consumed topic and to expire offsets of topics a stable group stopped
//! consuming; every other byte of the metadata is the clients' business.
//!
//! Every version of the subscription starts the same way — `version: int16`, then
//! `topics: [string]` with an int32 count and int16-length strings — so newer versions parse too.

use std::collections::BTreeSet;

/// The protocol type of Kafka consumers.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The topics a subscription names, or `None` when the metadata is not a subscription.
pub fn subscribed_topics(metadata: &[u8]) -> Option<BTreeSet<String>> {
    let mut buf = metadata;
    let version = i16::from_be_bytes(take(&mut buf, 2)?.try_into().ok()?);
    if version < 0 {
        return None;
    }
    let count = i32::from_be_bytes(take(&mut buf, 4)?.try_into().ok()?);
    if count < 0 || count as usize > buf.len() / 2 {
        return None;
    }
    let mut topics = BTreeSet::new();
    for _ in 0..count {
        let len = i16::from_be_bytes(take(&mut buf, 2)?.try_into().ok()?);
        let name = take(&mut buf, usize::try_from(len).ok()?)?;
        topics.insert(String::from_utf8(name.to_vec()).ok()?);
    }
    Some(topics)
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Some(head)
}

/// Encodes a version-0 subscription (tests, and the in-crate tests of other modules).
pub fn encode_subscription(topics: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        out.extend_from_slice(&(t.len() as i16).to_be_bytes());
        out.extend_from_slice(t.as_bytes());
    }
    // Null user data.
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_topics_of_any_version_and_refuses_garbage() {
        let sub = encode_subscription(&["a", "bb"]);
        let want: BTreeSet<String> = ["a".to_string(), "bb".to_string()].into();
        assert_eq!(subscribed_topics(&sub), Some(want.clone()));
        let mut v3 = sub.clone();
        v3[1] = 3;
        v3.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff]);
        assert_eq!(subscribed_topics(&v3), Some(want));
        assert_eq!(subscribed_topics(&[]), None);
        assert_eq!(subscribed_topics(&[0, 0, 0x7f, 0xff, 0xff, 0xff]), None);
        assert_eq!(subscribed_topics(&[0xff, 0xff, 0, 0, 0, 0]), None);
        assert_eq!(subscribed_topics(&sub[..8]), None);
    }
}
