//! One write of one partition: the records it takes become files of their tables' hours, and
//! the partition's manifest moves on (see `manifest` for why this is exactly once).

use std::collections::{BTreeMap, HashSet};

use anyhow::Context;
use rdkafka::{
    Offset, TopicPartitionList,
    consumer::{CommitMode, Consumer},
};

use super::{Held, Key, StreamWriter, marks};
use crate::{
    files::Feed,
    log::{Hour, hour_of, hour_start},
    manifest::{Count, Write},
};

impl StreamWriter {
    /// Does `write` of one partition: recorded as pending (with the folders it puts files
    /// in), files put, then the manifest applied and put, and the group's offset committed;
    /// with `closes`, the partition has closed that hour. Hours already marked that get rows
    /// are listed in the manifest and their markers written again.
    pub(super) async fn write(
        &mut self,
        key: &Key,
        write: Write,
        closes: Option<Hour>,
    ) -> anyhow::Result<()> {
        let objects = self.tables.objects.clone();
        let part = self.partitions.get_mut(key).context("partition")?;
        let manifest = part.manifest.as_mut().context("manifest")?;
        let (taken, left): (Vec<Held>, Vec<Held>) = std::mem::take(&mut part.records)
            .into_iter()
            .partition(|r| r.offset >= write.from && r.offset < write.to && r.hour <= write.hour);
        part.records = left;
        let first_left = part
            .records
            .iter()
            .map(|r| r.offset)
            .filter(|o| *o < write.to)
            .min();
        let freed: usize = taken.iter().map(Held::bytes).sum();
        let groups = groups(taken);
        let folders: Vec<(String, Hour)> = groups.keys().cloned().collect();
        // A redo deletes its files from the folders the first attempt used and it does not.
        let dropped: Vec<(String, Hour)> = if manifest.pending == Some(write) {
            (manifest.pending_folders.iter())
                .filter(|f| !folders.contains(f))
                .cloned()
                .collect()
        } else {
            if !groups.is_empty() {
                manifest.pending = Some(write);
                manifest.pending_folders = folders;
                marks::put_manifest(objects.as_ref(), key, manifest).await?;
            }
            Vec::new()
        };
        let prefix = format!("kafka-{}-{}-", key.0, key.1);
        let stem = format!("{prefix}{:012}-{:012}-", write.from, write.to);
        let mut counts = BTreeMap::new();
        for ((dataset, hour), records) in groups {
            let written = self
                .write_group(&dataset, hour, records, &prefix, &stem)
                .await?;
            counts.insert((dataset, hour), written);
        }
        for (dataset, hour) in dropped {
            if let Ok(folder) = self.tables.dataset(&dataset) {
                let partition = folder.partition(hour_start(hour));
                self.tables.delete_write(&partition, &stem).await?;
            }
        }
        let marked = marks::read_marked(objects.as_ref(), &key.0).await?;
        let expired = hour_of(self.tables.clock.now() - self.retention());
        let part = self.partitions.get_mut(key).context("partition")?;
        let manifest = part.manifest.as_mut().context("manifest")?;
        manifest.apply(write, first_left, &counts);
        if let Some(hour) = closes {
            manifest.closed = Some(manifest.closed.map_or(hour, |c| c.max(hour)));
        }
        for (dataset, hour) in counts.keys() {
            if marked.is_some_and(|m| *hour <= m) {
                manifest.remark.insert((dataset.clone(), *hour));
            }
        }
        manifest.expire(expired);
        marks::put_manifest(objects.as_ref(), key, manifest).await?;
        let committed = manifest.committed;
        part.bytes -= freed;
        self.bytes -= freed;
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(&key.0, key.1, Offset::Offset(committed))?;
        if let Err(e) = self.consumer.commit(&offsets, CommitMode::Async) {
            tracing::warn!(error = %e, topic = %key.0, partition = key.1, "lake writer: offset not committed (the manifest holds the position)");
        }
        let rows: u64 = counts.values().map(|c| c.rows).sum();
        if rows > 0 {
            tracing::info!(topic = %key.0, partition = key.1, from = write.from, to = write.to, rows, "lake records written");
        }
        // `_marked.json` is read again after the manifest is put: an hour marked meanwhile
        // from the manifests before it gets its marker again (see `mark`).
        let now_marked = marks::read_marked(objects.as_ref(), &key.0).await?;
        if now_marked != marked
            && let Some(manifest) = self
                .partitions
                .get_mut(key)
                .and_then(|p| p.manifest.as_mut())
        {
            for (dataset, hour) in counts.keys() {
                if now_marked.is_some_and(|m| *hour <= m) {
                    manifest.remark.insert((dataset.clone(), *hour));
                }
            }
        }
        self.remark(key).await
    }

    /// Writes one table's hour of a write, leaving out ids the partition's earlier files of
    /// the hour hold.
    async fn write_group(
        &self,
        dataset: &str,
        hour: Hour,
        mut records: Vec<Held>,
        prefix: &str,
        stem: &str,
    ) -> anyhow::Result<Count> {
        let table = self.tables.dataset(dataset)?;
        let partition = table.partition(hour_start(hour));
        if let Some(column) = table.decl.id_field.clone()
            && !table.quarantine
        {
            let wanted = records.iter().filter_map(|r| r.entry.id.clone()).collect();
            let before = self
                .tables
                .ids_written(&partition, prefix, stem, &column, wanted)
                .await?;
            if !before.is_empty() {
                records.retain(|r| r.entry.id.as_ref().is_none_or(|id| !before.contains(id)));
            }
        }
        let feed: Feed = Box::new(move |each| {
            for record in &records {
                each(&record.entry.row)?;
            }
            Ok(())
        });
        let written = self
            .tables
            .write_files(dataset, &partition, stem, feed)
            .await?;
        Ok(Count {
            rows: written.rows,
            files: written.files,
        })
    }
}

/// The records of each dataset's hour, sorted by time then offset, each id once.
fn groups(taken: Vec<Held>) -> BTreeMap<(String, Hour), Vec<Held>> {
    let mut by_hour: BTreeMap<(String, Hour), Vec<Held>> = BTreeMap::new();
    for held in taken {
        by_hour
            .entry((held.entry.dataset.clone(), held.hour))
            .or_default()
            .push(held);
    }
    for records in by_hour.values_mut() {
        // The first of an id, in offset order, is the one kept.
        let mut seen = HashSet::new();
        records.retain(|r| r.entry.id.as_ref().is_none_or(|id| seen.insert(id.clone())));
        records.sort_by_key(|r| (r.entry.at, r.offset));
    }
    by_hour
}
