//! Where shard replicas go: a pure function of the cluster's members, so that every node started
//! with the same flags derives the same initial voters without talking to anyone.
//!
//! - The metadata shard (0) has up to 3 voters (5 once the cluster has 5 nodes); every other
//!   node holds it as a learner, so every node answers Metadata from its own copy.
//! - Data shard `s` (1-based) has `replication_factor` voters (capped by the node count), taken
//!   round-robin from the sorted members starting at `(s - 1) mod n`: replica counts differ by at
//!   most one per node, and the first voter of each shard — its preferred leader — rotates, so
//!   leadership spreads evenly too.

use std::collections::BTreeMap;

/// Data shards of a new cluster: about `per_node` per node, counting each replica.
pub fn data_shard_count(per_node: u64, nodes: usize, replication_factor: usize) -> u64 {
    let nodes = nodes.max(1) as u64;
    let rf = replication_factor.clamp(1, nodes as usize) as u64;
    (per_node * nodes / rf).max(1)
}

/// The metadata shard's voters: the first 3 members, or 5 from 5 nodes up.
pub fn metadata_voters(members: &[u64]) -> Vec<u64> {
    let mut sorted = members.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let n = if sorted.len() >= 5 {
        5
    } else {
        sorted.len().min(3)
    };
    sorted.truncate(n);
    sorted
}

/// Every shard's voters, metadata shard included.
pub fn place_shards(
    members: &[u64],
    data_shards: u64,
    replication_factor: usize,
) -> BTreeMap<u64, Vec<u64>> {
    let mut sorted = members.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = BTreeMap::new();
    if sorted.is_empty() {
        return out;
    }
    out.insert(0, metadata_voters(&sorted));
    let n = sorted.len();
    let rf = replication_factor.clamp(1, n);
    for shard in 1..=data_shards {
        let start = ((shard - 1) as usize) % n;
        out.insert(shard, (0..rf).map(|k| sorted[(start + k) % n]).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_node_is_todays_single_node() {
        assert_eq!(data_shard_count(4, 1, 3), 4);
        let p = place_shards(&[7], 4, 3);
        assert_eq!(p.len(), 5);
        assert!(p.values().all(|v| v == &vec![7]));
    }

    #[test]
    fn three_nodes_rf3_balanced_replicas_and_preferred_leaders() {
        let shards = data_shard_count(4, 3, 3);
        assert_eq!(shards, 4);
        let p = place_shards(&[3, 1, 2], shards, 3);
        assert_eq!(p[&0], vec![1, 2, 3]);
        assert_eq!(p[&1], vec![1, 2, 3]);
        assert_eq!(p[&2], vec![2, 3, 1]);
        assert_eq!(p[&3], vec![3, 1, 2]);
        assert_eq!(p[&4], vec![1, 2, 3]);
    }

    #[test]
    fn more_nodes_than_replicas_spread_evenly() {
        let members = [1, 2, 3, 4, 5];
        let shards = data_shard_count(4, 5, 3);
        assert_eq!(shards, 6);
        let p = place_shards(&members, shards, 3);
        assert_eq!(p[&0], vec![1, 2, 3, 4, 5]);
        let mut count = BTreeMap::new();
        let mut first = BTreeMap::new();
        for (s, voters) in &p {
            if *s == 0 {
                continue;
            }
            assert_eq!(voters.len(), 3);
            for v in voters {
                *count.entry(*v).or_insert(0) += 1;
            }
            *first.entry(voters[0]).or_insert(0) += 1;
        }
        let (lo, hi) = (count.values().min().unwrap(), count.values().max().unwrap());
        assert!(hi - lo <= 1, "{count:?}");
        assert!(first.values().all(|&c| c <= 2), "{first:?}");
    }

    #[test]
    fn replication_factor_is_capped_by_the_node_count() {
        let p = place_shards(&[1, 2], 2, 3);
        assert_eq!(p[&1], vec![1, 2]);
        assert_eq!(p[&2], vec![2, 1]);
        assert_eq!(metadata_voters(&[1, 2, 3, 4]), vec![1, 2, 3]);
    }
}
