//! Shard snapshots: how a new replica of a shard (one added by a configuration change) gets
//! the shard's state.
//!
//! Entries stay in the Raft log until every replica has them, so an existing replica never
//! needs a snapshot; only a replica that joins a shard does. A snapshot is taken at the
//! leader's applied index and holds, for a data shard: its partitions' states, producer states
//! and index records, its consumer groups' records, and the Raft entries from the log's first
//! kept index to the snapshot index (the batches the index points into: a batch is stored once,
//! as its entry, so the entries *are* the partition data). For the metadata shard it holds the
//! cluster metadata document.
//!
//! Building needs the state machine, which raft-rs's `Storage` cannot reach: raft-rs asks, the
//! shard log records the request, and the driver prepares the snapshot in its next turn
//! ([`Driver::prepare_snapshots`]); raft-rs's retry at the next heartbeat response sends it.
//!
//! Installing replaces everything the replica held of the shard, in the same write as the
//! Raft state that makes the log start after the snapshot.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use jet_storage::keys::{self, META_GROUP_PREFIX};
use jet_storage::{Batch, PartitionState};
use raft::eraftpb::{ConfState, Entry, EntryType, Snapshot, SnapshotMetadata};

use super::apply::{Machine, Part};
use super::{Driver, METADATA_SHARD};
use crate::metadata::ClusterMetadata;
use crate::producer::ProducerEntry;
use crate::Error;

const MAGIC: &[u8; 4] = b"JSN1";
/// Which column family a snapshot row goes to.
const FAMILY_META: u8 = 0;
const FAMILY_INDEX: u8 = 1;
/// A prepared snapshot is dropped after this long (the replica that wanted it has it, or asks
/// again and gets a newer one).
const PREPARED_TTL: Duration = Duration::from_secs(60);

/// One row of a snapshot: column family tag, key, value.
pub(crate) type Row = (u8, Vec<u8>, Vec<u8>);

/// The contents of one shard snapshot.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Image {
    /// `(family, key, value)` rows, verbatim.
    pub rows: Vec<Row>,
    /// Raft entries up to the snapshot index that the partitions refer to.
    pub entries: Vec<Entry>,
}

impl Image {
    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self
            .rows
            .iter()
            .map(|(_, k, v)| 9 + k.len() + v.len())
            .sum::<usize>()
            + self
                .entries
                .iter()
                .map(|e| 21 + e.data.len())
                .sum::<usize>();
        let mut out = Vec::with_capacity(16 + size);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.rows.len() as u32).to_be_bytes());
        for (family, k, v) in &self.rows {
            out.push(*family);
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v);
        }
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.index.to_be_bytes());
            out.extend_from_slice(&e.term.to_be_bytes());
            out.push(e.get_entry_type() as i32 as u8);
            out.extend_from_slice(&(e.data.len() as u32).to_be_bytes());
            out.extend_from_slice(&e.data);
        }
        out
    }

    /// Decodes a snapshot; every length is checked against what is left, so a corrupt or
    /// hostile snapshot is an error, never a panic or a huge allocation. Entries' data are
    /// slices of `data`, not copies (they are the partitions' batches).
    pub fn decode(data: &Bytes) -> Result<Image, Error> {
        struct Cursor<'a> {
            data: &'a Bytes,
            at: usize,
        }
        impl Cursor<'_> {
            fn take(&mut self, n: usize) -> Result<std::ops::Range<usize>, Error> {
                if self.data.len() - self.at < n {
                    return Err(Error::Storage("snapshot is truncated".into()));
                }
                self.at += n;
                Ok(self.at - n..self.at)
            }
            fn bytes(&mut self, n: usize) -> Result<&[u8], Error> {
                let r = self.take(n)?;
                Ok(&self.data[r])
            }
            fn u8(&mut self) -> Result<u8, Error> {
                Ok(self.bytes(1)?[0])
            }
            fn u32(&mut self) -> Result<usize, Error> {
                Ok(u32::from_be_bytes(self.bytes(4)?.try_into().expect("4 bytes")) as usize)
            }
            fn u64(&mut self) -> Result<u64, Error> {
                Ok(u64::from_be_bytes(
                    self.bytes(8)?.try_into().expect("8 bytes"),
                ))
            }
        }
        let mut c = Cursor { data, at: 0 };
        if c.bytes(4)? != MAGIC {
            return Err(Error::Storage("not a Jet shard snapshot".into()));
        }
        let mut image = Image::default();
        for _ in 0..c.u32()? {
            let family = c.u8()?;
            if family != FAMILY_META && family != FAMILY_INDEX {
                return Err(Error::Storage(format!("snapshot row family {family}")));
            }
            let k = c.u32()?;
            let k = c.bytes(k)?.to_vec();
            let v = c.u32()?;
            let v = c.bytes(v)?.to_vec();
            image.rows.push((family, k, v));
        }
        for _ in 0..c.u32()? {
            let index = c.u64()?;
            let term = c.u64()?;
            let entry_type = match c.u8()? {
                0 => EntryType::EntryNormal,
                1 => EntryType::EntryConfChange,
                2 => EntryType::EntryConfChangeV2,
                k => return Err(Error::Storage(format!("snapshot entry type {k}"))),
            };
            let n = c.u32()?;
            let range = c.take(n)?;
            let mut e = Entry {
                index,
                term,
                data: data.slice(range),
                ..Default::default()
            };
            e.set_entry_type(entry_type);
            image.entries.push(e);
        }
        if c.at != data.len() {
            return Err(Error::Storage("trailing bytes after the snapshot".into()));
        }
        Ok(image)
    }
}

/// The data shard a consumer group's record belongs to (its coordinator shard), from the
/// record's key: `g` · u16 length · group · …
pub(crate) fn group_record_shard(key: &[u8], group_shards: u64) -> Option<u64> {
    if key.first() != Some(&META_GROUP_PREFIX) || key.len() < 3 {
        return None;
    }
    let n = u16::from_be_bytes([key[1], key[2]]) as usize;
    let name = key.get(3..3 + n)?;
    Some(crate::placement::group_shard(name, group_shards))
}

impl Machine {
    /// Everything the replicas of `shard` hold alike, as snapshot rows (also what the
    /// simulation compares across replicas).
    pub(crate) fn shard_rows(&self, shard: u64) -> Result<Vec<Row>, Error> {
        let mut rows = Vec::new();
        if shard == METADATA_SHARD {
            let doc = serde_json::to_vec(&self.metadata)
                .map_err(|e| Error::Storage(format!("cluster metadata: {e}")))?;
            rows.push((FAMILY_META, keys::META_CLUSTER.to_vec(), doc));
            return Ok(rows);
        }
        let mut tps: Vec<_> = self
            .parts
            .iter()
            .filter(|(_, p)| p.state.shard == shard)
            .map(|(tp, _)| *tp)
            .collect();
        tps.sort();
        for tp in tps {
            let part = &self.parts[&tp];
            rows.push((
                FAMILY_META,
                keys::partition_state(&tp).to_vec(),
                part.state.encode().to_vec(),
            ));
            for (k, v) in self.store.scan_meta(&keys::producer_prefix(&tp))? {
                rows.push((FAMILY_META, k, v));
            }
            for (k, v) in self.store.scan_index_raw(&tp)? {
                rows.push((FAMILY_INDEX, k, v));
            }
        }
        let group_shards = self.metadata.group_shard_count();
        for (k, v) in self.store.scan_meta(&[META_GROUP_PREFIX])? {
            if group_record_shard(&k, group_shards) == Some(shard) {
                rows.push((FAMILY_META, k, v));
            }
        }
        Ok(rows)
    }

    /// Drops what this replica held of `shard` (into `wb`, and from memory), before a
    /// snapshot's state replaces it.
    pub(super) fn forget_shard(
        &mut self,
        shard: u64,
        wb: &mut Batch,
    ) -> Result<Vec<jet_storage::TopicPartition>, Error> {
        let gone: Vec<_> = self
            .parts
            .iter()
            .filter(|(_, p)| p.state.shard == shard)
            .map(|(tp, _)| *tp)
            .collect();
        for tp in &gone {
            self.parts.remove(tp);
            wb.delete_partition(tp);
        }
        if shard != METADATA_SHARD {
            let group_shards = self.metadata.group_shard_count();
            for (k, _) in self.store.scan_meta(&[META_GROUP_PREFIX])? {
                if group_record_shard(&k, group_shards) == Some(shard) {
                    wb.delete_meta(&k);
                }
            }
        }
        Ok(gone)
    }

    /// Takes up the partitions (or the metadata) of an installed snapshot, once its rows are
    /// written. Returns the partitions that now exist here.
    fn adopt(
        &mut self,
        shard: u64,
        image: &Image,
    ) -> Result<Vec<jet_storage::TopicPartition>, Error> {
        let mut created = Vec::new();
        let mut producers: HashMap<_, Vec<(i64, ProducerEntry)>> = HashMap::new();
        for (family, k, v) in &image.rows {
            if *family != FAMILY_META {
                continue;
            }
            if shard == METADATA_SHARD && k.as_slice() == keys::META_CLUSTER {
                let doc: ClusterMetadata = serde_json::from_slice(v)
                    .map_err(|e| Error::Storage(format!("snapshot metadata: {e}")))?;
                self.metadata = doc;
                self.shared.grow_shards(self.metadata.data_shards);
            } else if let Some(tp) = keys::parse_partition_state(k) {
                let state = PartitionState::decode(v)?;
                let shard = state.shard;
                let part = Part::new(tp, state, &self.shared).ok_or_else(|| {
                    Error::Storage(format!("snapshot partition on unknown shard {shard}"))
                })?;
                self.parts.insert(tp, part);
                created.push(tp);
            } else if let Some((tp, pid)) = keys::parse_producer_state(k) {
                let entry = ProducerEntry::decode(v)
                    .ok_or_else(|| Error::Storage(format!("snapshot producer {pid} is corrupt")))?;
                producers.entry(tp).or_default().push((pid, entry));
            }
        }
        for (tp, list) in producers {
            if let Some(part) = self.parts.get_mut(&tp) {
                part.producers.extend(list);
            }
        }
        Ok(created)
    }
}

/// Writes an image into `wb`: rows, then the entries (after the caller's range delete of the
/// shard's old log, so they survive it: a write batch applies in order).
fn write_image(shard: u64, image: &Image, wb: &mut Batch) -> Result<(), Error> {
    for (family, k, v) in &image.rows {
        match *family {
            FAMILY_INDEX => wb.put_index_raw(k, v),
            _ => wb.put_meta(k, v),
        }
    }
    for e in &image.entries {
        wb.put_raft_entry(shard, e)?;
    }
    Ok(())
}

impl Driver {
    /// Builds the snapshots raft-rs asked for (see the module docs), at each shard's applied
    /// index, and drops stale ones.
    pub(super) fn prepare_snapshots(&mut self) -> Result<(), Error> {
        let now = self.clock.now();
        for i in 0..self.shards.len() {
            let s = &self.shards[i];
            if !s.raw.store().snapshot_wanted() {
                if s.prepared_at
                    .is_some_and(|t| now.duration_since(t) >= PREPARED_TTL)
                {
                    let s = &mut self.shards[i];
                    s.prepared_at = None;
                    s.raw.mut_store().set_prepared_snapshot(None);
                }
                continue;
            }
            let id = s.id;
            let applied = s.applied;
            let (first_kept, truncated_term) = s.raw.store().truncated();
            let term = if applied == first_kept {
                truncated_term
            } else {
                raft::Storage::term(s.raw.store(), applied)
                    .map_err(|e| Error::Storage(format!("shard {id} snapshot term: {e}")))?
            };
            let conf_state: ConfState = s.raw.store().conf_state().clone();
            let rows = self.machine.shard_rows(id)?;
            let entries = if id == METADATA_SHARD {
                Vec::new()
            } else {
                self.store
                    .raft_entries(id, first_kept + 1, applied + 1, u64::MAX)?
            };
            let image = Image { rows, entries };
            let data = image.encode();
            tracing::info!(
                shard = id,
                index = applied,
                bytes = data.len(),
                entries = image.entries.len(),
                "prepared a snapshot for a new replica"
            );
            let mut snap = Snapshot {
                data: data.into(),
                ..Default::default()
            };
            snap.set_metadata(SnapshotMetadata {
                conf_state: Some(conf_state).into(),
                index: applied,
                term,
                ..Default::default()
            });
            let s = &mut self.shards[i];
            s.prepared_at = Some(now);
            s.raw.mut_store().set_prepared_snapshot(Some(snap));
        }
        Ok(())
    }

    /// Installs a snapshot raft-rs accepted for shard slot `i`, into `persist` (written with
    /// the rest of the turn's Raft state). Memory follows once the write is done
    /// ([`Driver::adopt_snapshot`]).
    pub(super) fn install_snapshot(
        &mut self,
        i: usize,
        snap: &Snapshot,
        persist: &mut Batch,
    ) -> Result<Image, Error> {
        let id = self.shards[i].id;
        let meta = snap.get_metadata();
        let image = Image::decode(&snap.data)?;
        if image.entries.iter().any(|e| e.index > meta.index) {
            return Err(Error::Storage(format!(
                "snapshot of shard {id} holds entries past its index"
            )));
        }
        let gone = self.machine.forget_shard(id, persist)?;
        if !gone.is_empty() {
            let mut map = self.shared.partitions.write().expect("partitions lock");
            for tp in &gone {
                map.remove(tp);
            }
        }
        // Everything up to the snapshot index leaves the log, then the snapshot's entries
        // (the batches its partitions refer to) are written back below it.
        persist.truncate_raft_log(id, meta.index, meta.term);
        persist.delete_raft_entries_from(id, meta.index + 1);
        write_image(id, &image, persist)?;
        let cs = meta.get_conf_state().clone();
        persist.put_conf_state(id, &cs)?;
        persist.put_applied(id, meta.index);
        let s = &mut self.shards[i];
        s.raw
            .mut_store()
            .install_snapshot(meta.index, meta.term, cs);
        s.applied = meta.index;
        s.applied_term = meta.term;
        tracing::info!(
            shard = id,
            index = meta.index,
            entries = image.entries.len(),
            "installed a snapshot"
        );
        Ok(image)
    }

    /// After the write that installed `image`: the machine takes up its state and readers
    /// see it.
    pub(super) fn adopt_snapshot(&mut self, shard: u64, image: &Image) -> Result<(), Error> {
        let created = self.machine.adopt(shard, image)?;
        if shard == METADATA_SHARD {
            *self.shared.metadata.write().expect("metadata lock") =
                std::sync::Arc::new(self.machine.metadata.clone());
            self.members_due = true;
        }
        self.reconcile_due = true;
        if !created.is_empty() {
            let mut map = self.shared.partitions.write().expect("partitions lock");
            for tp in &created {
                if let Some(part) = self.machine.parts.get(tp) {
                    map.insert(*tp, part.handle.clone());
                    part.handle.publish(&part.state);
                }
            }
            drop(map);
            self.shared.partitions_changed.send_modify(|v| *v += 1);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_round_trip_and_garbage_is_an_error() {
        let mut e = Entry {
            index: 7,
            term: 3,
            data: b"batch".to_vec().into(),
            ..Default::default()
        };
        e.set_entry_type(EntryType::EntryNormal);
        let image = Image {
            rows: vec![
                (FAMILY_META, b"k".to_vec(), b"v".to_vec()),
                (FAMILY_INDEX, vec![1; 28], vec![2; 9]),
            ],
            entries: vec![e],
        };
        let bytes = Bytes::from(image.encode());
        let back = Image::decode(&bytes).unwrap();
        assert_eq!(back, image);
        // The entry's data is a slice of the snapshot, not a copy.
        let at = back.entries[0].data.as_ptr() as usize - bytes.as_ptr() as usize;
        assert_eq!(&bytes[at..at + 5], b"batch");
        for cut in 0..bytes.len() {
            assert!(
                Image::decode(&bytes.slice(..cut)).is_err(),
                "prefix of {cut} bytes"
            );
        }
        let changed = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = bytes.to_vec();
            f(&mut b);
            Image::decode(&Bytes::from(b))
        };
        assert!(changed(&|b| b[4..8].copy_from_slice(&u32::MAX.to_be_bytes())).is_err());
        assert!(changed(&|b| b.push(0)).is_err(), "trailing bytes");
        assert!(changed(&|b| b[8] = 9).is_err(), "unknown row family");
        assert!(Image::decode(&Bytes::from_static(b"nope")).is_err());
    }

    #[test]
    fn group_records_map_to_their_coordinator_shard() {
        let mut key = vec![META_GROUP_PREFIX];
        key.extend_from_slice(&5u16.to_be_bytes());
        key.extend_from_slice(b"group");
        key.push(b'm');
        let s = group_record_shard(&key, 4).unwrap();
        assert_eq!(s, crate::placement::group_shard(b"group", 4));
        assert!((1..=4).contains(&s));
        assert_eq!(group_record_shard(b"p", 4), None);
        assert_eq!(
            group_record_shard(&[META_GROUP_PREFIX, 0, 9, b'x'], 4),
            None
        );
    }
}
