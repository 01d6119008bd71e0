//! The lake writer of a deployment with brokers (`imagelake lake-writer`, and `serve` when
//! brokers are set): a member of the consumer group `[lake] group_id` that reads the events
//! topic, the requests topic and every declared table's topic, and writes each partition's
//! records to the lake hour by hour.
//!
//! A partition's records wait in memory until their hour is due (`grace` after its end, on the
//! writer's clock); the writer then notes the partition's end offset and, once it has read that
//! far, writes the records of the due hours and advances the partition's [`Manifest`] (see
//! there for the exactly-once argument). Only then is the Kafka offset committed, and it is
//! only a hint: the manifest says what is written, so a writer that reads records again skips
//! them. When the records held pass half of `max_buffer_bytes`, partitions are written early,
//! open hours included, so a backlog of any size is caught up in bounded memory.
//!
//! An hour of a table is marked complete (`_SUCCESS`) once every partition of its topic has
//! closed it, which an idle partition does as soon as the hour is due, so hours close on the
//! clock with or without records. A record of a marked hour (late, or consumed after its hour
//! was closed) is written at the next write of its partition in a file of its own, and the
//! hour's marker is written again with the new counts.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use async_trait::async_trait;
use futures::FutureExt;
use imagelake_core::{Timestamp, lake as tables, paths};
use imagelake_runtime::{
    AppState,
    tasks::{Step, Task},
};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rdkafka::{
    ClientContext, Message, Offset, Statistics, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::KafkaError,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{
    Tables,
    files::Feed,
    log::{Entry, Hour, hour_of, hour_start},
    manifest::{Count, Manifest, Write},
};

/// Messages taken per step at most.
const BATCH: usize = 10_000;
/// How often an idle writer looks at the clock.
const POLL: Duration = Duration::from_secs(1);
/// Broker calls (metadata, watermarks) give up after this.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// What a held record costs beyond its row, in bytes.
const RECORD_OVERHEAD: usize = 96;

type Key = (String, i32);

/// A record read and not yet written.
struct Held {
    offset: i64,
    hour: Hour,
    entry: Entry,
}

/// What the writer knows of one partition it holds.
#[derive(Default)]
struct Partition {
    /// Read from the object store before the partition's first record or write.
    manifest: Option<Manifest>,
    records: Vec<Held>,
    /// The offset after the last one read.
    end: Option<i64>,
    /// The hour to close, once the partition is read up to this offset (its end when the hour
    /// came due).
    closing: Option<(Hour, i64)>,
    /// The newest due hour this partition was told to close.
    told: Option<Hour>,
    bytes: usize,
}

impl Partition {
    /// How far the partition is read; its committed position when nothing is read yet.
    fn reached(&self) -> i64 {
        let committed = self.manifest.as_ref().map_or(0, |m| m.committed);
        self.end.unwrap_or(committed).max(committed)
    }
}

/// Tracks assignments for the writer, and reports lag and reachability.
struct LakeContext {
    state: AppState,
    changes: Mutex<Vec<(bool, Vec<Key>)>>,
}

impl ClientContext for LakeContext {
    fn stats(&self, statistics: Statistics) {
        let up = statistics.brokers.values().any(|b| b.state == "UP");
        let state = if up { "ok" } else { "unreachable" };
        self.state.health.report("kafka", state, true);
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    let labels = vec![
                        ("topic", topic.clone()),
                        ("partition", partition.to_string()),
                    ];
                    self.state
                        .metrics
                        .lake
                        .lag
                        .get_or_create(&labels)
                        .set(p.consumer_lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "lake writer: Kafka client error");
    }
}

impl ConsumerContext for LakeContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let keys = |list: &TopicPartitionList| -> Vec<Key> {
            list.elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect()
        };
        let change = match rebalance {
            Rebalance::Assign(list) => (true, keys(list)),
            Rebalance::Revoke(list) => (false, keys(list)),
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "lake writer: rebalance failed");
                return;
            }
        };
        tracing::info!(assigned = change.0, partitions = ?change.1, "lake writer: partitions changed");
        self.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(change);
    }
}

/// The writer task.
pub struct StreamWriter {
    tables: Arc<Tables>,
    consumer: Arc<StreamConsumer<LakeContext>>,
    /// The table each topic feeds.
    topics: BTreeMap<String, String>,
    partitions: BTreeMap<Key, Partition>,
    /// Bytes of records held, over every partition.
    bytes: usize,
    /// Past this, partitions are written early.
    cap: usize,
    /// The newest due hour when partitions were last told to close.
    due: Option<Hour>,
    /// Partitions to read again from these offsets, after a failure.
    rewind: BTreeMap<Key, Offset>,
}

impl StreamWriter {
    /// Joins the lake's consumer group and subscribes to every source topic.
    pub async fn connect(state: &AppState) -> anyhow::Result<Self> {
        let tables = Arc::new(Tables::open(state).await?);
        let settings = &state.settings;
        let mut kafka = settings.kafka.clone();
        kafka.group_id = settings.lake.group_id.clone();
        let mut config = imagelake_kafka::consumer_config(&kafka, settings.lake.max_record_bytes)?;
        // Offsets are committed by the writer after each write, and only as a hint.
        config.set("enable.auto.commit", "false");
        let context = LakeContext {
            state: state.clone(),
            changes: Mutex::default(),
        };
        state.health.report("kafka", "connecting", true);
        let consumer: StreamConsumer<LakeContext> = config.create_with_context(context)?;
        let mut topics = BTreeMap::new();
        topics.insert(kafka.events_topic.clone(), tables::EVENTS.to_owned());
        topics.insert(
            kafka.requests_topic.clone(),
            tables::API_REQUESTS.to_owned(),
        );
        for table in &settings.lake.tables {
            topics.insert(table.source_topic(), table.name.clone());
        }
        let names: Vec<&str> = topics.keys().map(String::as_str).collect();
        consumer.subscribe(&names)?;
        tracing::info!(topics = ?names, group = %kafka.group_id, "lake writer started");
        let cap = usize::try_from(settings.lake.max_buffer_bytes / 2).unwrap_or(usize::MAX);
        Ok(Self {
            tables,
            consumer: Arc::new(consumer),
            topics,
            partitions: BTreeMap::new(),
            bytes: 0,
            cap,
            due: None,
            rewind: BTreeMap::new(),
        })
    }

    /// The newest hour whose grace has passed.
    fn last_due(&self, now: Timestamp) -> Hour {
        let grace = chrono::Duration::from_std(self.tables.limits.grace).unwrap_or_default();
        hour_of(now - grace) - 1
    }

    /// Applies the assignments the consumer reported: a revoked partition's held records are
    /// dropped (its next holder reads them again from the manifest's position).
    fn apply_changes(&mut self) {
        let changes = std::mem::take(
            &mut *self
                .consumer
                .context()
                .changes
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for (assigned, keys) in changes {
            for key in keys {
                if assigned {
                    self.partitions.entry(key).or_default();
                } else if let Some(gone) = self.partitions.remove(&key) {
                    self.bytes -= gone.bytes;
                }
            }
        }
    }

    /// Whether the consumer reported a rebalance not applied yet.
    fn changed(&self) -> bool {
        !self
            .consumer
            .context()
            .changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    async fn load(&mut self, key: &Key) -> anyhow::Result<()> {
        let part = self.partitions.entry(key.clone()).or_default();
        if part.manifest.is_none() {
            part.manifest = Some(read_manifest(self.tables.objects.as_ref(), key).await?);
        }
        Ok(())
    }

    /// Holds one message's record, unless it is written or held already. Messages of a
    /// partition this writer does not hold (revoked meanwhile) are left to its next holder.
    async fn take(&mut self, message: Taken) -> anyhow::Result<()> {
        let key = (message.topic, message.partition);
        let Some(part) = self.partitions.get(&key) else {
            return Ok(());
        };
        if part.end.is_some_and(|end| message.offset < end) {
            return Ok(());
        }
        self.load(&key).await?;
        let Some(table) = self.topics.get(&key.0) else {
            return Ok(());
        };
        let dataset = self.tables.dataset(table)?;
        let entry = match self.tables.entry(
            dataset,
            &message.payload,
            message.offset as u64,
            message.received_at,
        ) {
            Ok(entry) | Err((entry, _)) => entry,
        };
        if entry.dataset.starts_with(tables::QUARANTINE) {
            crate::metrics_table(&self.tables.metrics.lake.quarantined, table).inc();
        }
        let hour = hour_of(entry.at);
        let part = self.partitions.get_mut(&key).context("partition")?;
        part.end = Some(message.offset + 1);
        let manifest = part.manifest.as_ref().context("manifest")?;
        if manifest.written(message.offset, hour) {
            return Ok(());
        }
        let size = entry.row.len() + RECORD_OVERHEAD;
        part.bytes += size;
        self.bytes += size;
        part.records.push(Held {
            offset: message.offset,
            hour,
            entry,
        });
        Ok(())
    }

    /// When a new hour is due: every partition held (and each newly assigned) is told to close
    /// it once read up to its end offset as it stands now; hours past the retention are
    /// deleted.
    async fn tick(&mut self) -> anyhow::Result<()> {
        let now = self.tables.clock.now();
        let due = self.last_due(now);
        let untold: Vec<Key> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.told != Some(due))
            .map(|(k, _)| k.clone())
            .collect();
        for key in untold {
            let consumer = self.consumer.clone();
            let (topic, partition) = key.clone();
            let high = tokio::task::spawn_blocking(move || {
                consumer.fetch_watermarks(&topic, partition, BROKER_TIMEOUT)
            })
            .await?
            .with_context(|| format!("reading the end of {}/{}", key.0, key.1))?
            .1;
            if let Some(part) = self.partitions.get_mut(&key) {
                part.closing = Some((due, high));
                part.told = Some(due);
            }
        }
        if self.due != Some(due) {
            self.due = Some(due);
            self.expire(now).await?;
        }
        Ok(())
    }

    /// Writes what is ready: a pending write found in a manifest, then the hours due of
    /// partitions read far enough, then (over the cap) partitions early.
    async fn settle(&mut self) -> anyhow::Result<()> {
        let keys: Vec<Key> = self.partitions.keys().cloned().collect();
        for key in &keys {
            self.load(key).await?;
            let part = &self.partitions[key];
            let manifest = part.manifest.as_ref().context("manifest")?;
            let reached = part.reached();
            if let Some(pending) = manifest.pending {
                if reached < pending.to {
                    continue;
                }
                self.write(key, pending, None).await?;
            }
            let part = &self.partitions[key];
            let manifest = part.manifest.as_ref().context("manifest")?;
            if let Some((hour, target)) = part.closing
                && reached >= target
                && reached >= manifest.must_reach()
            {
                let write = manifest.plan(reached, hour);
                self.write(key, write, Some(hour)).await?;
                if let Some(part) = self.partitions.get_mut(key) {
                    part.closing = None;
                }
                tracing::info!(topic = %key.0, partition = key.1, hour = %hour_start(hour), "lake partition closed");
                self.mark(&key.0).await?;
            }
        }
        if self.bytes > self.cap {
            for key in &keys {
                let part = &self.partitions[key];
                let manifest = part.manifest.as_ref().context("manifest")?;
                let reached = part.reached();
                if !part.records.is_empty()
                    && manifest.pending.is_none()
                    && reached >= manifest.must_reach()
                {
                    let write = manifest.plan(reached, Hour::MAX);
                    self.write(key, write, None).await?;
                }
            }
        }
        Ok(())
    }

    /// Does `write` of one partition: recorded as pending, files put, applied, committed;
    /// with `closes`, the partition has closed that hour.
    async fn write(&mut self, key: &Key, write: Write, closes: Option<Hour>) -> anyhow::Result<()> {
        let objects = self.tables.objects.clone();
        let part = self.partitions.get_mut(key).context("partition")?;
        let manifest = part.manifest.as_mut().context("manifest")?;
        if manifest.pending != Some(write) {
            manifest.pending = Some(write);
            put_manifest(objects.as_ref(), key, manifest).await?;
        }
        let (taken, left): (Vec<Held>, Vec<Held>) = std::mem::take(&mut part.records)
            .into_iter()
            .partition(|r| r.offset >= write.from && r.offset < write.to && r.hour <= write.hour);
        let first_left = left
            .iter()
            .map(|r| r.offset)
            .filter(|o| *o < write.to)
            .min();
        let freed: usize = taken
            .iter()
            .map(|r| r.entry.row.len() + RECORD_OVERHEAD)
            .sum();
        part.records = left;
        part.bytes -= freed;
        self.bytes -= freed;
        let mut counts = BTreeMap::new();
        for ((dataset, hour), mut records) in groups(taken) {
            let table = self.tables.dataset(&dataset)?;
            let partition = table.partition(hour_start(hour));
            let prefix = format!("kafka-{}-", key.1);
            let stem = format!("{prefix}{:012}-{:012}-", write.from, write.to);
            // An id an earlier write of this partition put in the hour is not written again.
            if let Some(column) = table.decl.id_field.clone()
                && !table.quarantine
            {
                let before = self
                    .tables
                    .ids_written(&partition, &prefix, &stem, &column)
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
                .write_files(&dataset, &partition, &stem, feed)
                .await?;
            counts.insert(
                (dataset, hour),
                Count {
                    rows: written.rows,
                    files: written.files,
                },
            );
        }
        let expired = hour_of(self.tables.clock.now() - self.retention());
        let part = self.partitions.get_mut(key).context("partition")?;
        let manifest = part.manifest.as_mut().context("manifest")?;
        manifest.apply(write, first_left, &counts);
        if let Some(hour) = closes {
            manifest.closed = Some(manifest.closed.map_or(hour, |c| c.max(hour)));
        }
        manifest.expire(expired);
        put_manifest(objects.as_ref(), key, manifest).await?;
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(&key.0, key.1, Offset::Offset(manifest.committed))?;
        if let Err(e) = self.consumer.commit(&offsets, CommitMode::Async) {
            tracing::warn!(error = %e, topic = %key.0, partition = key.1, "lake writer: offset not committed (the manifest holds the position)");
        }
        let rows: u64 = counts.values().map(|c| c.rows).sum();
        if rows > 0 {
            tracing::info!(topic = %key.0, partition = key.1, from = write.from, to = write.to, rows, "lake records written");
        }
        // Hours marked before get their marker again, with these rows counted.
        let marked = read_marked(objects.as_ref(), &key.0).await?;
        for (dataset, hour) in counts.keys() {
            if marked.is_some_and(|m| *hour <= m) {
                self.write_marker(&key.0, dataset, *hour).await?;
            }
        }
        Ok(())
    }

    fn retention(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.tables.limits.retention).unwrap_or_default()
    }

    /// The manifests of every partition of `topic`, or `None` while one has none yet.
    async fn manifests(&self, topic: &str) -> anyhow::Result<Option<Vec<(i32, Manifest)>>> {
        let consumer = self.consumer.clone();
        let name = topic.to_owned();
        let metadata = tokio::task::spawn_blocking(move || {
            consumer.fetch_metadata(Some(&name), BROKER_TIMEOUT)
        })
        .await??;
        let count = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len());
        let mut manifests = Vec::new();
        for partition in 0..count as i32 {
            let key = (topic.to_owned(), partition);
            match get_manifest(self.tables.objects.as_ref(), &key).await? {
                Some(m) => manifests.push((partition, m)),
                None => return Ok(None),
            }
        }
        Ok((!manifests.is_empty()).then_some(manifests))
    }

    /// Marks the hours every partition of `topic` has closed since the last marked one.
    async fn mark(&self, topic: &str) -> anyhow::Result<()> {
        let Some(manifests) = self.manifests(topic).await? else {
            return Ok(());
        };
        let Some(closed) = manifests.iter().map(|(_, m)| m.closed).min().flatten() else {
            return Ok(());
        };
        let objects = self.tables.objects.as_ref();
        let marked = read_marked(objects, topic).await?;
        if marked.is_some_and(|m| m >= closed) {
            return Ok(());
        }
        let Some(table) = self.topics.get(topic) else {
            return Ok(());
        };
        let quarantine = format!("{}/{table}", tables::QUARANTINE);
        // The first time, from the oldest hour any partition wrote.
        let first = manifests
            .iter()
            .flat_map(|(_, m)| [m.hours.get(table), m.hours.get(&quarantine)])
            .flatten()
            .filter_map(|hours| hours.keys().next().copied())
            .min();
        let earliest = hour_of(self.tables.clock.now() - self.retention()) + 1;
        let from = marked
            .map_or(first.unwrap_or(closed).min(closed), |m| m + 1)
            .max(earliest);
        for hour in from..=closed {
            self.marker(&manifests, topic, table, hour, true).await?;
            self.marker(&manifests, topic, &quarantine, hour, false)
                .await?;
        }
        let json = json!({ "through": closed }).to_string();
        objects
            .put(
                &paths::lake_marked(topic),
                PutPayload::from(json.into_bytes()),
            )
            .await?;
        Ok(())
    }

    /// Writes the marker of one dataset's hour again.
    async fn write_marker(&self, topic: &str, dataset: &str, hour: Hour) -> anyhow::Result<()> {
        if let Some(manifests) = self.manifests(topic).await? {
            self.marker(&manifests, topic, dataset, hour, true).await?;
        }
        Ok(())
    }

    /// The `_SUCCESS` of `dataset`'s hour, from the counts of every partition; an empty hour
    /// is marked only when `empty_too` (a table's, not a quarantine's).
    async fn marker(
        &self,
        manifests: &[(i32, Manifest)],
        topic: &str,
        dataset: &str,
        hour: Hour,
        empty_too: bool,
    ) -> anyhow::Result<()> {
        let mut total = Count::default();
        let mut sources = Vec::new();
        for (partition, m) in manifests {
            let count = m
                .hours
                .get(dataset)
                .and_then(|h| h.get(&hour))
                .copied()
                .unwrap_or_default();
            total.rows += count.rows;
            total.files += count.files;
            sources.push(json!({
                "source": "kafka",
                "topic": topic,
                "partition": partition,
                "committed": m.committed,
            }));
        }
        if total.files == 0 && !empty_too {
            return Ok(());
        }
        let marker = json!({
            "rows": total.rows,
            "files": total.files,
            "sources": sources,
            "closed_at": self.tables.clock.now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        });
        let location =
            paths::lake_success(&self.tables.dataset(dataset)?.partition(hour_start(hour)));
        self.tables
            .objects
            .put(&location, PutPayload::from(marker.to_string().into_bytes()))
            .await
            .with_context(|| format!("writing {location}"))?;
        crate::metrics_table(&self.tables.metrics.lake.hours_closed, dataset).inc();
        Ok(())
    }

    /// Deletes the hours past the retention of every table this writer feeds.
    async fn expire(&self, now: Timestamp) -> anyhow::Result<()> {
        let before = hour_of(now - self.retention());
        let objects = self.tables.objects.as_ref();
        for dataset in self.tables.datasets() {
            if self.topics.values().any(|t| *t == dataset.table.as_str()) {
                for folder in crate::writer::old_hours(objects, dataset, before).await? {
                    crate::writer::delete_hour(objects, &folder).await?;
                }
            }
        }
        Ok(())
    }
}

impl StreamWriter {
    async fn work(&mut self, before: Vec<Taken>, after: Option<Taken>) -> anyhow::Result<()> {
        for message in before {
            self.take(message).await?;
        }
        self.apply_changes();
        if let Some(message) = after {
            self.take(message).await?;
        }
        self.tick().await?;
        self.settle().await
    }

    /// After a failure (the object store or a broker out of reach), what is held in memory
    /// may be short of what was read: every partition is read again from its manifest's
    /// position.
    fn reset(&mut self) {
        for (key, part) in &mut self.partitions {
            let from = part
                .manifest
                .as_ref()
                .map_or(Offset::Beginning, |m| Offset::Offset(m.committed));
            self.rewind.insert(key.clone(), from);
            *part = Partition::default();
        }
        self.bytes = 0;
    }

    /// Moves the consumer back where [`reset`](Self::reset) said; nothing is read before
    /// every partition is back.
    fn rewind(&mut self) -> anyhow::Result<()> {
        let rewind = std::mem::take(&mut self.rewind);
        for (key, from) in rewind {
            if !self.partitions.contains_key(&key) {
                continue;
            }
            if let Err(e) = self.consumer.seek(&key.0, key.1, from, BROKER_TIMEOUT) {
                self.rewind.insert(key.clone(), from);
                anyhow::bail!("lake writer: {}/{} not rewound: {e}", key.0, key.1);
            }
        }
        Ok(())
    }
}

/// A message's parts the writer keeps.
struct Taken {
    topic: String,
    partition: i32,
    offset: i64,
    payload: Vec<u8>,
    received_at: Timestamp,
}

impl Taken {
    fn of(message: &impl Message, now: Timestamp) -> Self {
        let received_at = message
            .timestamp()
            .to_millis()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .unwrap_or(now);
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            payload: message.payload().unwrap_or_default().to_vec(),
            received_at,
        }
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

async fn get_manifest(objects: &dyn ObjectStore, key: &Key) -> anyhow::Result<Option<Manifest>> {
    let path = paths::lake_manifest(&key.0, key.1);
    match objects.get(&path).await {
        Ok(found) => Ok(Some(
            serde_json::from_slice(&found.bytes().await?)
                .with_context(|| format!("reading {path}"))?,
        )),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {path}")),
    }
}

async fn read_manifest(objects: &dyn ObjectStore, key: &Key) -> anyhow::Result<Manifest> {
    Ok(get_manifest(objects, key).await?.unwrap_or_default())
}

async fn put_manifest(
    objects: &dyn ObjectStore,
    key: &Key,
    manifest: &Manifest,
) -> anyhow::Result<()> {
    let path = paths::lake_manifest(&key.0, key.1);
    objects
        .put(&path, PutPayload::from(serde_json::to_vec(manifest)?))
        .await
        .with_context(|| format!("writing {path}"))?;
    Ok(())
}

async fn read_marked(objects: &dyn ObjectStore, topic: &str) -> anyhow::Result<Option<Hour>> {
    let path = paths::lake_marked(topic);
    match objects.get(&path).await {
        Ok(found) => {
            let value: serde_json::Value = serde_json::from_slice(&found.bytes().await?)?;
            Ok(value["through"].as_i64())
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {path}")),
    }
}

#[async_trait]
impl Task for StreamWriter {
    async fn step(&mut self, stop: &CancellationToken) -> anyhow::Result<Step> {
        self.rewind()?;
        let now = self.tables.clock.now();
        let first = tokio::select! {
            () = stop.cancelled() => return Ok(Step::Idle),
            received = self.consumer.recv() => Some(received.map(|m| Taken::of(&m, now))),
            () = tokio::time::sleep(POLL) => None,
        };
        // A rebalance is reported inside the `recv` that returns the first message after it:
        // the messages before belong to the assignment before it.
        let mut before = Vec::new();
        let mut after = None;
        let mut next = first;
        loop {
            match next {
                Some(Ok(message)) if self.changed() => {
                    after = Some(message);
                    break;
                }
                Some(Ok(message)) => before.push(message),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "lake writer: broker error");
                    break;
                }
                None => break,
            }
            if before.len() >= BATCH {
                break;
            }
            next = self
                .consumer
                .recv()
                .now_or_never()
                .map(|r| r.map(|m| Taken::of(&m, now)));
        }
        let busy = !before.is_empty() || after.is_some();
        if let Err(e) = self.work(before, after).await {
            self.reset();
            return Err(e);
        }
        let held: usize = self.partitions.values().map(|p| p.records.len()).sum();
        self.tables.metrics.lake.waiting.set(held as i64);
        Ok(if busy { Step::Busy } else { Step::Idle })
    }

    /// The step itself waits for a message or the clock.
    async fn wait(&mut self, _stop: &CancellationToken) {}
}
