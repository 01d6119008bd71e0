//! The event publisher: moves the metadata store's outbox onto the events topic.
//!
//! Every lifecycle change wrote its event in the same transaction as the change; this task sends
//! those events, in the order they were written, as JSON keyed by customer (one customer's events
//! stay in order on one partition), through an idempotent producer (`acks=all`: a send the
//! client retries is written once). An event is marked published only after its delivery report
//! says the broker has it, so a crash between a change and its publish only delays the event.
//!
//! A crash after the broker took an event but before it was marked would send it again. So
//! whenever a publisher takes over (at start, after losing its lease, after a failed send) it
//! first reads back the tail of each partition, as far as one batch reaches, and marks the
//! outbox's events already there as published. One publisher runs at a time per metadata store,
//! whatever the number of replicas: each round holds the store's `event-publisher` lease.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use imagelake_core::events::Event;
use imagelake_runtime::{
    AppState,
    settings::Kafka,
    tasks::{Step, Task},
};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::ingest::producer_config;

/// Events per round, and how far back a take-over reads the topic.
const BATCH: usize = 500;
/// How often an idle publisher looks at the outbox.
const IDLE: Duration = Duration::from_millis(500);
const LEASE_NAME: &str = "event-publisher";
/// A lease is held this long and renewed once less than [`RENEW_BELOW`] is left, which is more
/// than a round can take (a send gives up after [`SEND_TIMEOUT`]). A publisher that stops
/// cleanly gives its lease up; one that crashed holds it until it runs out.
const LEASE: Duration = Duration::from_secs(15);
const RENEW_BELOW: Duration = Duration::from_secs(10);
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a replica without the lease tries to take it.
const STANDBY: Duration = Duration::from_secs(3);
/// The record header carrying the event id, which the read-back looks for.
const EVENT_ID_HEADER: &str = "event-id";

/// What a round did, which decides how long to wait before the next.
#[derive(PartialEq, Eq)]
enum Round {
    /// A full batch went out; there may be more.
    Full,
    /// The outbox is drained.
    Drained,
    /// Another replica holds the lease.
    Standby,
}

pub struct Publisher {
    state: AppState,
    producer: FutureProducer,
    settings: Kafka,
    holder: String,
    held_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether the topic's tail was read back since this publisher took over.
    reconciled: bool,
    /// How long to wait after the last round: the outbox was drained, or another replica holds
    /// the lease.
    pause: Duration,
}

impl Publisher {
    /// The publisher of the outbox. Settings librdkafka refuses were refused at start
    /// ([`crate::check_config`]), so a round never fails on them.
    pub fn connect(state: AppState) -> anyhow::Result<Self> {
        let settings = state.settings.kafka.clone();
        let mut config = producer_config(&settings, 1 << 20)?;
        config
            .set("compression.type", "zstd")
            .set("linger.ms", "10")
            .set("message.timeout.ms", SEND_TIMEOUT.as_millis().to_string());
        tracing::info!(topic = %settings.events_topic, "event publisher started");
        Ok(Self {
            producer: config.create()?,
            holder: format!("{}-{}", std::process::id(), Uuid::now_v7()),
            held_until: None,
            reconciled: false,
            pause: Duration::ZERO,
            settings,
            state,
        })
    }
}

/// The event publisher as a task: each step is one round (take or renew the lease, read the
/// outbox, send, mark); a failed round leaves the events in the outbox and is tried again by the
/// supervisor with backoff. `finish` gives up the lease, so another replica takes over at once.
#[async_trait::async_trait]
impl Task for Publisher {
    async fn step(&mut self, _: &CancellationToken) -> anyhow::Result<Step> {
        match self.round().await {
            Ok(Round::Full) => Ok(Step::Busy),
            Ok(round) => {
                self.pause = if round == Round::Standby {
                    STANDBY
                } else {
                    IDLE
                };
                Ok(Step::Idle)
            }
            Err(e) => {
                self.reconciled = false;
                self.state.health.report("events", "failing", false);
                Err(e.context("the events stay in the outbox"))
            }
        }
    }

    async fn wait(&mut self, stop: &CancellationToken) {
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(self.pause) => {}
        }
    }

    /// Every send was awaited to its delivery report; nothing is left in the producer.
    async fn finish(&mut self) {
        self.release_lease().await;
    }
}

impl Publisher {
    async fn round(&mut self) -> anyhow::Result<Round> {
        if !self.hold_lease().await? {
            self.reconciled = false;
            self.state.health.report("events", "standby", false);
            return Ok(Round::Standby);
        }
        let mut events = self.state.store.unpublished_events(BATCH).await?;
        let read = events.len();
        if !self.reconciled {
            self.reconcile(&mut events).await?;
            self.reconciled = true;
        }
        if !events.is_empty() {
            self.send(&events).await?;
        }
        self.state.health.report("events", "ok", false);
        Ok(if read == BATCH {
            Round::Full
        } else {
            Round::Drained
        })
    }

    /// Takes or renews the lease when less than [`RENEW_BELOW`] of it is left.
    async fn hold_lease(&mut self) -> anyhow::Result<bool> {
        let now = self.state.clock.now();
        let renew_below = chrono::Duration::from_std(RENEW_BELOW)?;
        if self
            .held_until
            .is_some_and(|until| until - now > renew_below)
        {
            return Ok(true);
        }
        let until = now + chrono::Duration::from_std(LEASE)?;
        let held = self
            .state
            .store
            .acquire_lease(LEASE_NAME, &self.holder, now, until)
            .await?;
        self.held_until = held.then_some(until);
        Ok(held)
    }

    /// Lets another replica (or the next start) take over at once.
    async fn release_lease(&self) {
        if self.held_until.is_some() {
            let now = self.state.clock.now();
            let store = &self.state.store;
            if let Err(e) = store
                .acquire_lease(LEASE_NAME, &self.holder, now, now)
                .await
            {
                tracing::warn!(error = %e, "event publisher: could not give up its lease");
            }
        }
    }

    /// Sends `events` and marks those the broker acknowledged.
    async fn send(&self, events: &[Event]) -> anyhow::Result<()> {
        let records = events
            .iter()
            .map(|e| Ok((e, e.customer_id.to_string(), serde_json::to_vec(e)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let sends = records.iter().map(|(event, key, payload)| {
            let id = event.event_id.to_string();
            let version = event.schema_version.to_string();
            let headers = [
                (EVENT_ID_HEADER, id.as_str()),
                ("event-type", event.event_type.as_str()),
                ("schema-version", version.as_str()),
            ]
            .into_iter()
            .fold(OwnedHeaders::new(), |h, (key, value)| {
                h.insert(Header {
                    key,
                    value: Some(value),
                })
            });
            let record = FutureRecord::to(&self.settings.events_topic)
                .key(key)
                .payload(payload)
                .headers(headers);
            self.producer.send(record, SEND_TIMEOUT)
        });
        let results = futures::future::join_all(sends).await;
        let mut delivered = Vec::with_capacity(events.len());
        let mut refused = None;
        for (result, event) in results.into_iter().zip(events) {
            match result {
                Ok(_) => delivered.push(event.event_id),
                Err((e, _)) => {
                    refused.get_or_insert(e);
                }
            }
        }
        let now = self.state.clock.now();
        self.state.store.mark_published(&delivered, now).await?;
        let metrics = &self.state.metrics;
        metrics.events_published.inc_by(delivered.len() as u64);
        tracing::debug!(count = delivered.len(), "events published");
        match refused {
            None => Ok(()),
            Some(e) => {
                let failed = (events.len() - delivered.len()) as u64;
                metrics.event_publish_failures.inc_by(failed);
                anyhow::bail!("the broker did not take {failed} events: {e}")
            }
        }
    }

    /// Marks those of `pending` (the outbox's oldest events) already on the topic as published,
    /// and leaves the others in `pending`.
    async fn reconcile(&self, pending: &mut Vec<Event>) -> anyhow::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let wanted: HashSet<Uuid> = pending.iter().map(|e| e.event_id).collect();
        let config = readback_config(&self.settings)?;
        let topic = self.settings.events_topic.clone();
        let found =
            tokio::task::spawn_blocking(move || on_topic(&config, &topic, &wanted)).await??;
        if !found.is_empty() {
            tracing::info!(
                count = found.len(),
                "event publisher: events sent before a restart were already on the topic"
            );
            let now = self.state.clock.now();
            self.state.store.mark_published(&found, now).await?;
            pending.retain(|e| !found.contains(&e.event_id));
        }
        Ok(())
    }
}

/// A consumer that reads the events topic back without joining any group's work.
fn readback_config(settings: &Kafka) -> anyhow::Result<ClientConfig> {
    let brokers = settings
        .brokers
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("kafka.brokers is not set"))?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{}-events-readback", settings.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    for (key, value) in &settings.config {
        config.set(key, value);
    }
    Ok(config)
}

/// Which of `wanted` are among the last [`BATCH`] records of each partition of `topic`. A
/// partition is read to its end (librdkafka's end-of-partition signal) rather than to the high
/// watermark read before: some Kafka-protocol brokers (tansu) count the watermark in batches,
/// which only makes the read start earlier.
fn on_topic(
    config: &ClientConfig,
    topic: &str,
    wanted: &HashSet<Uuid>,
) -> anyhow::Result<Vec<Uuid>> {
    const WAIT: Duration = Duration::from_secs(10);
    let consumer: BaseConsumer = config.create()?;
    let metadata = consumer.fetch_metadata(Some(topic), WAIT)?;
    let Some(described) = metadata.topics().first() else {
        return Ok(Vec::new());
    };
    match described.error() {
        None => {}
        // Nothing was ever published.
        Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
            return Ok(Vec::new());
        }
        Some(e) => anyhow::bail!("events topic {topic}: {:?}", RDKafkaErrorCode::from(e)),
    }
    let mut tail = TopicPartitionList::new();
    let mut open = HashSet::new();
    for partition in described.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, partition.id(), WAIT)?;
        if high > low {
            let from = low.max(high - BATCH as i64);
            tail.add_partition_offset(topic, partition.id(), Offset::Offset(from))?;
            open.insert(partition.id());
        }
    }
    if open.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&tail)?;
    let deadline = Instant::now() + 3 * WAIT;
    let mut found = Vec::new();
    while !open.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "reading back the events topic took too long"
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                open.remove(&partition);
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(message)) => {
                let id = message.headers().and_then(|headers| {
                    headers
                        .iter()
                        .find(|h| h.key == EVENT_ID_HEADER)
                        .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<Uuid>().ok())
                });
                if let Some(id) = id.filter(|id| wanted.contains(id)) {
                    found.push(id);
                }
            }
        }
    }
    Ok(found)
}
