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

/// The data shard that coordinates consumer group `group` (FNV-1a of its name), `1..=data_shards`.
pub fn group_shard(group: &[u8], data_shards: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in group {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    1 + h % data_shards.max(1)
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

/// The members not dead.
fn alive(members: &[u64], dead: &[u64]) -> Vec<u64> {
    members
        .iter()
        .copied()
        .filter(|m| !dead.contains(m))
        .collect()
}

/// Data-shard replicas per live node (the metadata shard is light and left out).
fn data_load(placement: &BTreeMap<u64, Vec<u64>>, alive: &[u64]) -> BTreeMap<u64, usize> {
    let mut load: BTreeMap<u64, usize> = alive.iter().map(|m| (*m, 0)).collect();
    for (shard, replicas) in placement {
        if *shard == 0 {
            continue;
        }
        for r in replicas {
            if let Some(n) = load.get_mut(r) {
                *n += 1;
            }
        }
    }
    load
}

/// Where replicas go once some members are dead: each dead replica of a shard is replaced by
/// the live member not already holding the shard that holds the fewest replicas (counting the
/// new placement; ties to the lower id), in the dead one's position, so the shard keeps its
/// replica count and, where it can, its preferred leader's rotation. A dead replica with no
/// live member to take its place stays (nothing better exists until a node comes back or
/// joins). Returns only the shards that change.
pub fn replace_dead(
    current: &BTreeMap<u64, Vec<u64>>,
    members: &[u64],
    dead: &[u64],
) -> BTreeMap<u64, Vec<u64>> {
    let alive = alive(members, dead);
    let mut load = data_load(current, &alive);
    let mut out = BTreeMap::new();
    for (shard, replicas) in current {
        let mut next = replicas.clone();
        for slot in 0..next.len() {
            if !dead.contains(&next[slot]) {
                continue;
            }
            let candidate = load
                .iter()
                .filter(|(m, _)| !next.contains(m))
                .min_by_key(|(m, n)| (**n, **m))
                .map(|(m, _)| *m);
            if let Some(m) = candidate {
                next[slot] = m;
                *load.get_mut(&m).expect("alive member") += 1;
            }
        }
        if &next != replicas {
            out.insert(*shard, next);
        }
    }
    out
}

/// The voters of `count` new data shards: each on the `replication_factor` live members holding
/// the fewest data replicas (counting the shards placed before it; ties to the lower id), led
/// first by the one of them that is the preferred leader of the fewest shards, so replicas and
/// leaders of a grown cluster stay spread.
pub fn new_shard_replicas(
    current: &BTreeMap<u64, Vec<u64>>,
    members: &[u64],
    dead: &[u64],
    replication_factor: u64,
    count: u64,
) -> Vec<Vec<u64>> {
    let alive = alive(members, dead);
    if alive.is_empty() {
        return Vec::new();
    }
    let rf = (replication_factor.max(1) as usize).min(alive.len());
    let mut load = data_load(current, &alive);
    let mut leads: BTreeMap<u64, usize> = alive.iter().map(|m| (*m, 0)).collect();
    for (shard, replicas) in current {
        if let (true, Some(n)) = (*shard != 0, replicas.first().and_then(|f| leads.get_mut(f))) {
            *n += 1;
        }
    }
    let mut out = Vec::new();
    for _ in 0..count {
        let mut by_load: Vec<(usize, u64)> = load.iter().map(|(m, n)| (*n, *m)).collect();
        by_load.sort_unstable();
        let mut chosen: Vec<u64> = by_load.iter().take(rf).map(|(_, m)| *m).collect();
        chosen.sort_by_key(|m| (leads[m], load[m], *m));
        for m in &chosen {
            *load.get_mut(m).expect("alive member") += 1;
        }
        *leads.get_mut(&chosen[0]).expect("alive member") += 1;
        out.push(chosen);
    }
    out
}

/// Where replicas should be, from where they are: dead replicas re-placed
/// ([`replace_dead`]), shards below the replication factor grown onto live nodes (a cluster
/// that started smaller than it is now), the metadata shard's voters grown to
/// [`metadata_voters`]' count, then data replicas moved from the most loaded live node to the
/// least loaded until counts differ by at most one (a node that joined takes its share).
/// Each change keeps the other replicas in their positions. Returns only the shards that
/// change; applying the result again returns nothing.
pub fn target_placement(
    current: &BTreeMap<u64, Vec<u64>>,
    members: &[u64],
    dead: &[u64],
    replication_factor: u64,
) -> BTreeMap<u64, Vec<u64>> {
    let mut next = current.clone();
    next.extend(replace_dead(current, members, dead));
    let alive = alive(members, dead);
    if alive.is_empty() {
        return BTreeMap::new();
    }
    let load = |next: &BTreeMap<u64, Vec<u64>>| data_load(next, &alive);
    // Grow.
    let shards: Vec<u64> = next.keys().copied().collect();
    for shard in shards {
        let target = if shard == 0 {
            metadata_voters(&alive).len()
        } else if replication_factor == 0 {
            next[&shard].len()
        } else {
            (replication_factor as usize).min(alive.len())
        };
        while next[&shard].len() < target {
            let l = load(&next);
            let replicas = &next[&shard];
            let Some(m) = l
                .iter()
                .filter(|(m, _)| !replicas.contains(m))
                .min_by_key(|(m, n)| (**n, **m))
                .map(|(m, _)| *m)
            else {
                break;
            };
            next.get_mut(&shard).expect("shard").push(m);
        }
    }
    // Balance data replicas, one move at a time, bounded.
    for _ in 0..next.len() * 4 {
        let l = load(&next);
        let (Some((&hi, &hi_n)), Some((&lo, &lo_n))) = (
            l.iter().max_by_key(|(m, n)| (**n, std::cmp::Reverse(**m))),
            l.iter().min_by_key(|(m, n)| (**n, **m)),
        ) else {
            break;
        };
        if hi_n <= lo_n + 1 {
            break;
        }
        let Some(replicas) = next
            .iter_mut()
            .rev()
            .find(|(s, r)| **s != 0 && r.contains(&hi) && !r.contains(&lo))
            .map(|(_, r)| r)
        else {
            break;
        };
        let slot = replicas.iter().position(|m| *m == hi).expect("holds hi");
        replicas[slot] = lo;
    }
    next.into_iter()
        .filter(|(s, r)| current.get(s) != Some(r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_replicas_move_to_the_least_loaded_live_nodes() {
        let current = place_shards(&[1, 2, 3, 4], 4, 3);
        let moved = replace_dead(&current, &[1, 2, 3, 4], &[3]);
        let mut after = current.clone();
        after.extend(moved.clone());
        for (shard, r) in &after {
            assert!(
                !r.contains(&3),
                "shard {shard} still on the dead node: {r:?}"
            );
            let mut u = r.clone();
            u.sort_unstable();
            u.dedup();
            assert_eq!(
                u.len(),
                current[shard].len(),
                "shard {shard} keeps its size"
            );
        }
        // Only the shards that held node 3 change, each in node 3's slot.
        for (shard, r) in &moved {
            let slot = current[shard].iter().position(|m| *m == 3).unwrap();
            for (i, m) in r.iter().enumerate() {
                if i != slot {
                    assert_eq!(*m, current[shard][i]);
                }
            }
        }
        assert_eq!(
            moved.len(),
            current.values().filter(|r| r.contains(&3)).count()
        );
        // Counts stay balanced: 5 shards x 3 replicas over 3 live nodes.
        let mut count: BTreeMap<u64, usize> = BTreeMap::new();
        for r in after.values() {
            for m in r {
                *count.entry(*m).or_default() += 1;
            }
        }
        let (lo, hi) = (count.values().min().unwrap(), count.values().max().unwrap());
        assert!(hi - lo <= 1, "{count:?}");
    }

    fn counts(p: &BTreeMap<u64, Vec<u64>>) -> BTreeMap<u64, usize> {
        let mut c = BTreeMap::new();
        for (s, r) in p {
            if *s != 0 {
                for m in r {
                    *c.entry(*m).or_default() += 1;
                }
            }
        }
        c
    }

    #[test]
    fn a_cluster_of_one_grows_to_three_replicas_as_nodes_join() {
        let current = place_shards(&[1], 4, 3);
        let moved = target_placement(&current, &[1, 2, 3], &[], 3);
        let mut after = current.clone();
        after.extend(moved);
        assert_eq!(after[&0], vec![1, 2, 3]);
        for s in 1..=4 {
            let mut r = after[&s].clone();
            r.sort_unstable();
            assert_eq!(r, vec![1, 2, 3], "shard {s}");
            assert_eq!(after[&s][0], 1, "the existing replica stays first");
        }
        assert!(target_placement(&after, &[1, 2, 3], &[], 3).is_empty());
    }

    #[test]
    fn a_fourth_node_takes_its_share() {
        let current = place_shards(&[1, 2, 3], 4, 3);
        let moved = target_placement(&current, &[1, 2, 3, 4], &[], 3);
        let mut after = current.clone();
        after.extend(moved.clone());
        let c = counts(&after);
        assert_eq!(c.values().sum::<usize>(), 12);
        assert_eq!(c[&4], 3, "{c:?}");
        assert!(c.values().all(|n| *n == 3), "{c:?}");
        for r in after.values() {
            let mut u = r.clone();
            u.sort_unstable();
            u.dedup();
            assert_eq!(u.len(), r.len());
        }
        assert!(target_placement(&after, &[1, 2, 3, 4], &[], 3).is_empty());
        // A dead node and a join at once: the dead one holds nothing afterwards.
        let moved = target_placement(&current, &[1, 2, 3, 4], &[2], 3);
        let mut after = current.clone();
        after.extend(moved);
        assert!(after.values().all(|r| !r.contains(&2)), "{after:?}");
        assert!(after.iter().all(|(s, r)| *s == 0 || r.len() == 3));
    }

    #[test]
    fn with_no_spare_node_the_dead_replica_stays() {
        let current = place_shards(&[1, 2, 3], 2, 3);
        assert!(replace_dead(&current, &[1, 2, 3], &[3]).is_empty());
        assert!(replace_dead(&current, &[1, 2, 3], &[]).is_empty());
    }

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

    #[test]
    fn new_shards_go_to_the_least_loaded_nodes_and_spread_leaders() {
        // 4 data shards on nodes 1–3 (3 replicas each), then node 4 joined.
        let current = place_shards(&[1, 2, 3], 4, 3);
        let added = new_shard_replicas(&current, &[1, 2, 3, 4], &[], 3, 1);
        // The empty node, then the two least loaded; node 4 leads none yet, node 2 leads one
        // shard and node 1 two.
        assert_eq!(added, vec![vec![4, 2, 1]]);
        // A dead member gets none; the new nodes take replicas first, and each new shard has
        // another preferred leader.
        let added = new_shard_replicas(&current, &[1, 2, 3, 4, 5], &[3], 3, 2);
        assert_eq!(added, vec![vec![4, 5, 1], vec![5, 4, 2]]);
        assert!(new_shard_replicas(&current, &[1, 2, 3], &[1, 2, 3], 3, 1).is_empty());
    }
}
