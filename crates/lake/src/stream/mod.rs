//! The lake writer of a deployment with brokers (`imagelake lake-writer`, and `serve` when
//! brokers are set): a member of the consumer group `[lake] group_id` that reads the events
//! topic, the requests topic and every declared table's topic, and writes each partition's
//! records to the lake hour by hour.
//!
//! A partition's records wait in memory until their hour is due (`grace` after its end, on the
//! writer's clock); the writer then notes the partition's end offset and, once it has read that
//! far, writes the records of the due hours and advances the partition's [`Manifest`] (see
//! there for the exactly-once argument). The manifest, not the group's committed offset, says
//! what is written: a writer given a partition reads its manifest and seeks to its position,
//! and the offset it commits after each write is only a hint (and the lag metric). When the
//! records held pass an eighth of `max_buffer_bytes`, the largest partitions are written early,
//! open hours included, so a backlog of any size is caught up in bounded memory.
//!
//! An hour of a table is marked complete (`_SUCCESS`) once every partition of its topic has
//! closed it, which an idle partition does as soon as the hour is due, so hours close on the
//! clock with or without records. A record of a marked hour (late, or read after its hour was
//! closed) is written at its partition's next close in a file of its own, and the hour's marker
//! is written again with the new counts.

mod marks;
mod write;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use futures::FutureExt;
use imagelake_core::{Timestamp, lake as tables};
use imagelake_runtime::{
    AppState,
    tasks::{Step, Task},
};
use rdkafka::{
    ClientContext, Message, Offset, Statistics, TopicPartitionList,
    consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::KafkaError,
};
use tokio_util::sync::CancellationToken;

use crate::{
    Tables,
    log::{Entry, Hour, hour_of, hour_start},
    manifest::Manifest,
    parquet::Budget,
};

/// Messages taken per step at most.
const BATCH: usize = 10_000;
/// How often an idle writer looks at the clock.
const POLL: Duration = Duration::from_secs(1);
/// Broker calls (metadata, watermarks, seeks) give up after this.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// A step's writes stop past this, so the consumer is polled (and a rebalance served) well
/// within `max.poll.interval.ms`.
const SETTLE_BUDGET: Duration = Duration::from_secs(10);
/// What a held record costs beyond its row and id, in bytes.
const RECORD_OVERHEAD: usize = 128;

type Key = (String, i32);

/// A record read and not yet written.
struct Held {
    offset: i64,
    hour: Hour,
    entry: Entry,
}

impl Held {
    fn bytes(&self) -> usize {
        self.entry.row.len() + self.entry.id.as_ref().map_or(0, String::len) + RECORD_OVERHEAD
    }
}

/// What the writer knows of one partition it holds.
#[derive(Default)]
struct Partition {
    /// Read from the object store when the partition is assigned.
    manifest: Option<Manifest>,
    records: Vec<Held>,
    /// The offset after the last one read.
    end: Option<i64>,
    /// The first offset the brokers still hold, at the last look.
    low: i64,
    /// The hour to close, once the partition is read up to its end when the hour came due:
    /// the larger of what the brokers answered then and what their next fetch answer says
    /// (some brokers answer the first with the start of their last batch).
    closing: Option<Closing>,
    /// The newest due hour this partition was told to close.
    told: Option<Hour>,
    bytes: usize,
}

impl Partition {
    /// How far the partition is read: past the last record taken, past what the consumer
    /// stepped over (transaction markers), past what the brokers no longer hold, and never
    /// before the manifest's position.
    fn reached(&self, position: Option<i64>) -> i64 {
        let committed = self.manifest.as_ref().map_or(0, |m| m.committed);
        [self.end, position, Some(self.low)]
            .into_iter()
            .flatten()
            .fold(committed, i64::max)
    }
}

#[derive(Debug, Clone, Copy)]
struct Closing {
    hour: Hour,
    end: i64,
    since: Instant,
}

/// How long a closing partition waits for a fetch answer (librdkafka's statistics) before the
/// brokers' first answer alone decides its end.
const END_WAIT: Duration = Duration::from_secs(30);

/// A rebalance, as the consumer reported it.
enum Change {
    Assign(Vec<Key>),
    Revoke(Vec<Key>),
    /// The assignment failed and was dropped.
    Lost,
}

/// Tracks assignments for the writer, and reports lag and reachability.
struct LakeContext {
    state: AppState,
    required: bool,
    changes: Mutex<Vec<Change>>,
    /// Each partition's end as the brokers' last fetch answer said, and when it was seen.
    ends: Mutex<HashMap<Key, (i64, Instant)>>,
}

impl LakeContext {
    /// The partition's end as seen in a fetch answer after `since`.
    fn end_since(&self, key: &Key, since: Instant) -> Option<i64> {
        let ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        ends.get(key)
            .filter(|(_, seen)| *seen > since)
            .map(|(end, _)| *end)
    }
}

impl ClientContext for LakeContext {
    fn stats(&self, statistics: Statistics) {
        let state = if imagelake_kafka::brokers_up(&statistics) {
            "ok"
        } else {
            "unreachable"
        };
        self.state.health.report("kafka", state, self.required);
        for (topic, partition, p) in imagelake_kafka::partitions(&statistics) {
            let key = (topic.to_owned(), partition);
            if p.hi_offset >= 0 {
                self.ends
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.clone(), (p.hi_offset, Instant::now()));
            }
            if p.consumer_lag >= 0 {
                let labels = vec![("topic", key.0), ("partition", partition.to_string())];
                self.state
                    .metrics
                    .lake
                    .lag
                    .get_or_create(&labels)
                    .set(p.consumer_lag);
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
            Rebalance::Assign(list) => {
                tracing::info!(partitions = ?keys(list), "lake writer: partitions assigned");
                Change::Assign(keys(list))
            }
            Rebalance::Revoke(list) => {
                tracing::info!(partitions = ?keys(list), "lake writer: partitions revoked");
                Change::Revoke(keys(list))
            }
            Rebalance::Error(e) => {
                tracing::warn!(error = %e, "lake writer: rebalance failed; every partition dropped");
                Change::Lost
            }
        };
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
    /// Past this, the largest partitions are written early.
    cap: usize,
    /// A step takes messages up to about this many bytes.
    batch_bytes: usize,
    /// Partitions to seek to their manifest's position before their records are taken: newly
    /// assigned ones, and all of them after a failure.
    rewind: BTreeSet<Key>,
}

impl StreamWriter {
    /// Joins the lake's consumer group and subscribes to every source topic. With `required`
    /// (a `lake-writer`), the process is not ready while the brokers are out of reach.
    pub async fn connect(state: &AppState, required: bool) -> anyhow::Result<Self> {
        let mut tables = Tables::open(state).await?;
        let settings = &state.settings;
        let lake = &settings.lake;
        // The memory cap, shared: an eighth for the records held, a quarter for a write's
        // budget (its pipeline holds about five quarters of it at the most), a sixteenth for
        // what librdkafka fetches ahead and a step's messages, and the rest for the process
        // itself and the allocator's slack.
        tables.limits.budget = Budget::within(lake.max_buffer_bytes / 4, lake.max_file_bytes);
        let cap = lake.max_buffer_bytes;
        let mut kafka = settings.kafka.clone();
        kafka.group_id = lake.group_id.clone();
        let mut config = imagelake_kafka::consumer_config(&kafka, lake.max_record_bytes)?;
        let fetch = (cap / 64).clamp(lake.max_record_bytes + (1 << 20), 64 << 20);
        config
            // Offsets are committed by the writer after each write, and only as a hint.
            .set("enable.auto.commit", "false")
            .set("fetch.max.bytes", fetch.to_string())
            .set("max.partition.fetch.bytes", (fetch / 2).to_string())
            .set("receive.message.max.bytes", (fetch + (1 << 20)).to_string())
            .set("queued.max.messages.kbytes", (cap / 32 / 1024).to_string())
            // A full fetch queue is drained within a step: fetch again soon, not after 1 s.
            .set("fetch.queue.backoff.ms", "20")
            .set("fetch.wait.max.ms", "100");
        for (key, value) in &kafka.config {
            config.set(key, value);
        }
        let context = LakeContext {
            state: state.clone(),
            required,
            changes: Mutex::default(),
            ends: Mutex::default(),
        };
        state.health.report("kafka", "connecting", required);
        let consumer: StreamConsumer<LakeContext> = config.create_with_context(context)?;
        let mut topics = BTreeMap::new();
        topics.insert(kafka.events_topic.clone(), tables::EVENTS.to_owned());
        topics.insert(
            kafka.requests_topic.clone(),
            tables::API_REQUESTS.to_owned(),
        );
        for table in &lake.tables {
            topics.insert(table.source_topic(), table.name.clone());
        }
        let names: Vec<&str> = topics.keys().map(String::as_str).collect();
        consumer.subscribe(&names)?;
        tracing::info!(topics = ?names, group = %kafka.group_id, "lake writer started");
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        Ok(Self {
            tables: Arc::new(tables),
            consumer: Arc::new(consumer),
            topics,
            partitions: BTreeMap::new(),
            bytes: 0,
            cap: cap / 8,
            batch_bytes: cap / 64,
            rewind: BTreeSet::new(),
        })
    }

    /// The newest hour whose grace has passed.
    fn last_due(&self, now: Timestamp) -> Hour {
        let grace = chrono::Duration::from_std(self.tables.limits.grace).unwrap_or_default();
        hour_of(now - grace) - 1
    }

    fn retention(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.tables.limits.retention).unwrap_or_default()
    }

    /// Applies the assignments the consumer reported. A partition assigned starts afresh from
    /// its manifest; a revoked one's held records are dropped (its next holder reads them
    /// again from the manifest's position).
    fn apply_changes(&mut self) {
        let changes = std::mem::take(
            &mut *self
                .consumer
                .context()
                .changes
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for change in changes {
            match change {
                Change::Assign(keys) => {
                    for key in keys {
                        if let Some(old) = self.partitions.insert(key.clone(), Partition::default())
                        {
                            self.bytes -= old.bytes;
                        }
                        self.rewind.insert(key);
                    }
                }
                Change::Revoke(keys) => {
                    for key in keys {
                        if let Some(gone) = self.partitions.remove(&key) {
                            self.bytes -= gone.bytes;
                        }
                        self.rewind.remove(&key);
                    }
                }
                Change::Lost => {
                    self.partitions.clear();
                    self.rewind.clear();
                    self.bytes = 0;
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

    /// Reads the manifest of each partition to rewind and seeks it to the manifest's position;
    /// a partition whose seek fails is tried again at the next step, and its records are not
    /// taken meanwhile.
    async fn rewind(&mut self) {
        for key in self.rewind.clone() {
            let Some(part) = self.partitions.get_mut(&key) else {
                self.rewind.remove(&key);
                continue;
            };
            *part = Partition::default();
            let manifest = match marks::get_manifest(self.tables.objects.as_ref(), &key).await {
                Ok(found) => found.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), topic = %key.0, partition = key.1, "lake writer: manifest not read");
                    continue;
                }
            };
            let consumer = self.consumer.clone();
            let (topic, partition, from) = (key.0.clone(), key.1, manifest.committed);
            let sought = tokio::task::spawn_blocking(move || {
                consumer.seek(&topic, partition, Offset::Offset(from), BROKER_TIMEOUT)
            })
            .await;
            match sought {
                Ok(Ok(())) => {
                    part.manifest = Some(manifest);
                    self.rewind.remove(&key);
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, topic = %key.0, partition = key.1, "lake writer: seek not done yet");
                }
                Err(e) => tracing::warn!(error = %e, "lake writer: seek failed"),
            }
        }
    }

    /// After a failure (the object store or a broker out of reach) what is held in memory may
    /// be short of what was read: every partition is read again from its manifest.
    fn reset(&mut self) {
        for (key, part) in &mut self.partitions {
            *part = Partition::default();
            self.rewind.insert(key.clone());
        }
        self.bytes = 0;
    }

    /// Holds one message's record, unless it is written or held already. Messages of a
    /// partition not held (revoked meanwhile) or not yet sought to its manifest are left.
    fn take(&mut self, message: Taken) -> anyhow::Result<()> {
        let key = (message.topic, message.partition);
        if self.rewind.contains(&key) {
            return Ok(());
        }
        let Some(part) = self.partitions.get_mut(&key) else {
            return Ok(());
        };
        let Some(manifest) = &part.manifest else {
            return Ok(());
        };
        if part.end.is_some_and(|end| message.offset < end) {
            return Ok(());
        }
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
        let hour = hour_of(entry.at);
        part.end = Some(message.offset + 1);
        if manifest.written(message.offset, hour) {
            return Ok(());
        }
        if entry.dataset.starts_with(tables::QUARANTINE) {
            crate::metrics_table(&self.tables.metrics.lake.quarantined, table).inc();
        }
        let held = Held {
            offset: message.offset,
            hour,
            entry,
        };
        part.bytes += held.bytes();
        self.bytes += held.bytes();
        part.records.push(held);
        Ok(())
    }

    /// Tells each partition not told yet to close the newest due hour once read up to its end
    /// offset as it stands now; A broker
    /// that does not answer for a partition is asked again at the next step.
    async fn tick(&mut self) {
        let now = self.tables.clock.now();
        let due = self.last_due(now);
        let untold: Vec<Key> = self
            .partitions
            .iter()
            .filter(|(k, p)| p.told != Some(due) && !self.rewind.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in untold {
            let consumer = self.consumer.clone();
            let (topic, partition) = key.clone();
            let watermarks = tokio::task::spawn_blocking(move || {
                consumer.fetch_watermarks(&topic, partition, BROKER_TIMEOUT)
            })
            .await;
            match watermarks {
                Ok(Ok((low, high))) => {
                    if let Some(part) = self.partitions.get_mut(&key) {
                        let committed = part.manifest.as_ref().map_or(0, |m| m.committed);
                        if low > committed {
                            tracing::warn!(topic = %key.0, partition = key.1, committed, low, "lake writer: the brokers deleted records before the lake had them (topic retention)");
                        }
                        part.low = low;
                        part.closing = Some(Closing {
                            hour: due,
                            end: high,
                            since: Instant::now(),
                        });
                        part.told = Some(due);
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, topic = %key.0, partition = key.1, "lake writer: the end of a partition is unknown");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lake writer: the end of a partition is unknown")
                }
            }
        }
    }

    /// The end a closing partition must be read to, once known.
    fn closing_end(&self, key: &Key, answered: i64, since: Instant) -> Option<i64> {
        match self.consumer.context().end_since(key, since) {
            Some(fetched) => Some(answered.max(fetched)),
            None => (since.elapsed() > END_WAIT).then_some(answered),
        }
    }

    /// The consumer's position in each partition it holds.
    fn positions(&self) -> HashMap<Key, i64> {
        let Ok(list) = self.consumer.position() else {
            return HashMap::new();
        };
        list.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(n) => Some(((e.topic().to_owned(), e.partition()), n)),
                _ => None,
            })
            .collect()
    }

    /// Writes what is ready, for at most [`SETTLE_BUDGET`]: a pending write found in a
    /// manifest, markers owed, the hours due of partitions read far enough, then (over the cap)
    /// the largest partitions early.
    async fn settle(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + SETTLE_BUDGET;
        let positions = self.positions();
        let keys: Vec<Key> = self
            .partitions
            .keys()
            .filter(|k| !self.rewind.contains(*k))
            .cloned()
            .collect();
        let mut closed_topics = BTreeSet::new();
        for key in &keys {
            if Instant::now() > deadline {
                break;
            }
            let part = &self.partitions[key];
            let Some(manifest) = &part.manifest else {
                continue;
            };
            let reached = part.reached(positions.get(key).copied());
            if let Some(pending) = manifest.pending {
                if reached < pending.to {
                    continue;
                }
                self.write(key, pending, None).await?;
            }
            self.remark(key).await?;
            let part = &self.partitions[key];
            let Some(manifest) = &part.manifest else {
                continue;
            };
            if let Some(Closing { hour, end, since }) = part.closing
                && let Some(end) = self.closing_end(key, end, since)
                && reached >= end
                && reached >= manifest.must_reach()
            {
                let write = manifest.plan(reached, hour);
                self.write(key, write, Some(hour)).await?;
                if let Some(part) = self.partitions.get_mut(key) {
                    part.closing = None;
                }
                tracing::info!(topic = %key.0, partition = key.1, hour = %hour_start(hour), "lake partition closed");
                closed_topics.insert(key.0.clone());
            }
        }
        for topic in closed_topics {
            self.mark(&topic).await?;
        }
        self.write_early(&keys, &positions, deadline).await
    }

    /// Over the cap, writes the largest partitions, open hours included, until the records
    /// held are down to half the cap.
    async fn write_early(
        &mut self,
        keys: &[Key],
        positions: &HashMap<Key, i64>,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        if self.bytes <= self.cap {
            return Ok(());
        }
        let mut largest: Vec<&Key> = keys.iter().collect();
        largest.sort_by_key(|k| std::cmp::Reverse(self.partitions.get(*k).map_or(0, |p| p.bytes)));
        for key in largest {
            if self.bytes <= self.cap / 2 || Instant::now() > deadline {
                break;
            }
            let Some(part) = self.partitions.get(key) else {
                continue;
            };
            let Some(manifest) = &part.manifest else {
                continue;
            };
            let reached = part.reached(positions.get(key).copied());
            if !part.records.is_empty()
                && manifest.pending.is_none()
                && reached >= manifest.must_reach()
            {
                let write = manifest.plan(reached, Hour::MAX);
                self.write(key, write, None).await?;
            }
        }
        Ok(())
    }

    async fn work(&mut self, before: Vec<Taken>, after: Option<Taken>) -> anyhow::Result<()> {
        for message in before {
            self.take(message)?;
        }
        self.apply_changes();
        if let Some(message) = after {
            self.take(message)?;
        }
        self.tick().await;
        self.settle().await
    }

    /// Takes what the consumer has, up to a batch: `before` a rebalance, and the message the
    /// rebalance came with (the first of the new assignment).
    fn gather(&self, first: Option<Taken>, now: Timestamp) -> (Vec<Taken>, Option<Taken>) {
        let mut before = Vec::new();
        let mut bytes = 0;
        let mut next = first.map(Ok);
        while let Some(received) = next {
            match received {
                Ok(message) if self.changed() => return (before, Some(message)),
                Ok(message) => {
                    bytes += message.payload.len();
                    before.push(message);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lake writer: broker error");
                    break;
                }
            }
            if before.len() >= BATCH || bytes >= self.batch_bytes {
                break;
            }
            next = self
                .consumer
                .recv()
                .now_or_never()
                .map(|r| r.map(|m| Taken::of(&m, now)));
        }
        (before, None)
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
    /// The message's timestamp is the time it was received (the door's clock), so a record is
    /// checked the same way by whichever writer reads it.
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

#[async_trait]
impl Task for StreamWriter {
    async fn step(&mut self, stop: &CancellationToken) -> anyhow::Result<Step> {
        self.apply_changes();
        self.rewind().await;
        let now = self.tables.clock.now();
        let first = tokio::select! {
            () = stop.cancelled() => return Ok(Step::Idle),
            received = self.consumer.recv() => Some(received.map(|m| Taken::of(&m, now))),
            () = tokio::time::sleep(POLL) => None,
        };
        let first = match first {
            Some(Ok(message)) => Some(message),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "lake writer: broker error");
                None
            }
            None => None,
        };
        let (before, after) = self.gather(first, now);
        let busy = !before.is_empty() || after.is_some();
        // A write moves records out of memory before its files are put: after an error, or a
        // panic, what is held is read again from the manifests, never redone short.
        let worked = std::panic::AssertUnwindSafe(self.work(before, after))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the lake writer panicked in a step")));
        if let Err(e) = worked {
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
