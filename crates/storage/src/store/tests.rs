//! Tests of the store: reads through the index, refusals, raft-log restore, statistics.

use super::*;
use uuid::Uuid;

fn fake_batch(records: i32, max_ts: i64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len.max(61)];
    b[23..27].copy_from_slice(&(records - 1).to_be_bytes());
    b[35..43].copy_from_slice(&max_ts.to_be_bytes());
    b
}

/// Three batches of 10 records in one raft entry of shard 1, indexed as apply would.
fn store_with_three_batches(dir: &Path) -> (Store, TopicPartition) {
    let store = Store::open(dir, &StoreOptions::default()).unwrap();
    let tp = TopicPartition::new(Uuid::new_v4(), 0);
    let mut data = vec![0xAAu8; 5];
    let mut b = store.batch();
    let mut cum_bytes = 0;
    for (i, ts) in [100i64, 300, 200].iter().enumerate() {
        let pos = data.len() as u32;
        data.extend_from_slice(&fake_batch(10, *ts, 100));
        b.put_index(
            &tp,
            &IndexEntry {
                base_offset: i as i64 * 10,
                shard: 1,
                raft_index: 7,
                raft_term: 2,
                position: pos,
                length: 100,
                leader_epoch: 2,
                last_offset: i as i64 * 10 + 9,
                max_timestamp: *ts,
                cum_max_timestamp: [100, 300, 300][i],
                cum_bytes,
            },
        );
        cum_bytes += 100;
    }
    let e = Entry {
        index: 7,
        term: 2,
        data: data.into(),
        ..Default::default()
    };
    b.put_raft_entry(1, &e).unwrap();
    store.write(b, true).unwrap();
    (store, tp)
}

#[test]
fn reads_through_the_index_from_the_batch_holding_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (store, tp) = store_with_three_batches(dir.path());
    let got = store.read_batches(&tp, 15, 30, 1 << 20, true).unwrap();
    assert_eq!(got.count, 2);
    assert_eq!(got.records.len(), 200);
    // Base offset and leader epoch are patched on the way out.
    assert_eq!(&got.records[0..8], &10i64.to_be_bytes());
    assert_eq!(&got.records[12..16], &2i32.to_be_bytes());
    assert_eq!(&got.records[100..108], &20i64.to_be_bytes());
    // The high watermark bounds the read, and so does max_bytes (but one always comes).
    assert_eq!(
        store.read_batches(&tp, 0, 20, 1 << 20, true).unwrap().count,
        2
    );
    assert_eq!(store.read_batches(&tp, 0, 30, 150, true).unwrap().count, 1);
    assert_eq!(store.read_batches(&tp, 0, 30, 50, true).unwrap().count, 1);
    assert_eq!(store.read_batches(&tp, 0, 30, 50, false).unwrap().count, 0);

    // Binary searches over the running maximum timestamp and the cumulative bytes.
    let by_ts = store
        .index_search(&tp, 0, 30, |e| e.cum_max_timestamp >= 150)
        .unwrap()
        .unwrap();
    assert_eq!(by_ts.base_offset, 10);
    assert!(store
        .index_search(&tp, 0, 30, |e| e.cum_max_timestamp >= 301)
        .unwrap()
        .is_none());
    let by_bytes = store
        .index_search(&tp, 0, 30, |e| e.cum_bytes >= 150)
        .unwrap()
        .unwrap();
    assert_eq!(by_bytes.base_offset, 20);
    assert_eq!(
        store
            .index_holding(&tp, 12, 30)
            .unwrap()
            .unwrap()
            .base_offset,
        10
    );

    let mut b = store.batch();
    b.delete_index_range(&tp, 0, 10);
    store.write(b, true).unwrap();
    assert_eq!(
        store
            .index_holding(&tp, 3, 30)
            .unwrap()
            .unwrap()
            .base_offset,
        10
    );
    let left: Vec<_> = store.index_range(&tp, 0, 30).map(|e| e.unwrap()).collect();
    assert_eq!(left.len(), 2);
}

#[test]
fn stats_count_writes_and_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_three_batches(dir.path());
    let before = store.stats();
    assert!(before.bytes_written > 300, "{before:?}");
    store.flush_all().unwrap();
    let after = store.stats();
    assert!(after.flushes > before.flushes, "{after:?}");
    assert!(after.flush_bytes_written > 0, "{after:?}");
}

#[test]
fn refuses_another_node_id_and_other_formats() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        store.claim_node_id(3).unwrap();
        store.claim_node_id(3).unwrap();
    }
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let err = store.claim_node_id(4).unwrap_err();
    assert!(err.to_string().contains("node 3"), "{err}");
    drop(store);

    let old = tempfile::tempdir().unwrap();
    {
        let mut o = Options::default();
        o.create_if_missing(true);
        o.create_missing_column_families(true);
        DB::open_cf(&o, old.path(), ["log"]).unwrap();
    }
    let err = Store::open(old.path(), &StoreOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("format 1"), "{err}");
}

#[test]
fn shard_log_restores_only_unapplied_entries() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let mut b = store.batch();
        let cs = ConfState {
            voters: vec![1],
            ..Default::default()
        };
        b.put_conf_state(3, &cs).unwrap();
        for i in 1..=5u64 {
            let e = Entry {
                index: i,
                term: 2,
                data: vec![i as u8].into(),
                ..Default::default()
            };
            b.put_raft_entry(3, &e).unwrap();
        }
        b.truncate_raft_log(3, 1, 2);
        b.put_applied(3, 3);
        store.write(b, true).unwrap();
    }
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let log = store.load_shard(3).unwrap().unwrap();
    assert_eq!(log.applied(), 3);
    assert_eq!(log.truncated(), (1, 2));
    assert_eq!(log.in_memory(), 2, "entries 4 and 5");
    assert_eq!(store.raft_term(3, 2).unwrap(), Some(2));
    assert_eq!(store.raft_term(3, 1).unwrap(), None);
    assert_eq!(store.raft_last_index(3).unwrap(), Some(5));
    let got = store.raft_entries(3, 2, 4, u64::MAX).unwrap();
    assert_eq!(got.iter().map(|e| e.index).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(&got[0].data[..], &[2]);
    assert!(store.load_shard(4).unwrap().is_none());
}
