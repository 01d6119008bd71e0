//! [`StreamAdmin`] on the brokers: what the console shows of the stream and how it re-drives
//! dead letters. Offsets come from the brokers themselves (watermarks, and the groups' committed
//! offsets read with a consumer of each group that never joins it), so any `api` replica answers
//! the same whatever the consumers are doing. Dead letters are read with an assigned consumer
//! that commits nothing.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use imagelake_runtime::{
    AppState, Error,
    settings::Settings,
    stream::{
        DeadLetterMessage, DeadLetterPage, PartitionState, StreamAdmin, StreamOverview, TopicState,
    },
};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::{BorrowedMessage, Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};

use crate::ingest::{consumer_config, producer_config};

/// How long one question to the brokers may take.
const ASK: Duration = Duration::from_secs(10);
/// The most dead letters one re-drive of "all" sends.
pub const REDRIVE_MAX: usize = 10_000;
/// Dead letters read (values and all) and sent back at a time.
const BATCH: i64 = 20;
/// The dead-letter headers imagelake adds; a re-drive leaves them off.
const OURS: [&str; 6] = [
    "imagelake-error-code",
    "imagelake-error-message",
    "imagelake-source-topic",
    "imagelake-source-partition",
    "imagelake-source-offset",
    REDRIVES,
];
const REDRIVES: &str = "imagelake-redrive-count";

/// A consumer group's name and a consumer of it that only looks.
type Group<'a> = (&'a str, &'a BaseConsumer);

/// The stream's administration on the brokers of `kafka.brokers`.
pub struct StreamConsole {
    state: AppState,
    /// Consumers that read the committed offsets of the stream's group and of the lake's.
    ingest_group: BaseConsumer,
    lake_group: BaseConsumer,
    producer: FutureProducer,
    /// Reads the dead-letter topic by assignment; one request at a time.
    reader: Mutex<BaseConsumer>,
    /// The last look at each topic's end offsets, for messages per second.
    seen: Mutex<HashMap<String, (Instant, i64)>>,
}

impl StreamConsole {
    pub fn connect(state: &AppState) -> anyhow::Result<Self> {
        let settings = &state.settings;
        let kafka = &settings.kafka;
        let max = settings.limits.max_body_bytes;
        Ok(Self {
            ingest_group: looker(settings, &kafka.group_id)?.create()?,
            lake_group: looker(settings, &settings.lake.group_id)?.create()?,
            producer: producer_config(kafka, max)?.create()?,
            reader: Mutex::new(looker(settings, "imagelake-console")?.create()?),
            state: state.clone(),
            seen: Mutex::default(),
        })
    }

    /// Every topic, what it is for, and the group that reads it here (its name and a consumer
    /// of it).
    fn topics(&self) -> Vec<(String, String, Option<Group<'_>>)> {
        let settings = &self.state.settings;
        let kafka = &settings.kafka;
        let ingest = Some((kafka.group_id.as_str(), &self.ingest_group));
        let lake = Some((settings.lake.group_id.as_str(), &self.lake_group));
        let mut topics = vec![
            (kafka.images_topic.clone(), "images".to_owned(), ingest),
            (
                kafka.dead_letter_topic.clone(),
                "dead-letters".to_owned(),
                None,
            ),
            (kafka.events_topic.clone(), "events".to_owned(), lake),
            (kafka.requests_topic.clone(), "requests".to_owned(), lake),
        ];
        for table in &settings.lake.tables {
            let purpose = format!("lake:{}", table.name);
            topics.push((table.source_topic(), purpose, lake));
        }
        topics
    }

    fn topic_state(&self, name: &str, purpose: String, group: Option<Group<'_>>) -> TopicState {
        let mut topic = TopicState {
            name: name.to_owned(),
            purpose,
            group: group.map(|(name, _)| name.to_owned()),
            partitions: Vec::new(),
            lag: None,
            messages_per_second: None,
            error: None,
        };
        match read_partitions(&self.ingest_group, name, group.map(|(_, g)| g)) {
            Ok(partitions) => {
                topic.lag = partitions.iter().map(|p| p.lag).sum();
                let end: i64 = partitions.iter().map(|p| p.end_offset).sum();
                topic.messages_per_second = self.rate(name, end);
                topic.partitions = partitions;
            }
            Err(e) => topic.error = Some(e),
        }
        topic
    }

    /// Messages per second into `topic` since the previous look a second or more ago.
    fn rate(&self, topic: &str, end: i64) -> Option<f64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match seen.get(topic).copied() {
            Some((at, _)) if now.duration_since(at) < Duration::from_secs(1) => None,
            previous => {
                seen.insert(topic.to_owned(), (now, end));
                previous.map(|(at, before)| {
                    (end - before).max(0) as f64 / now.duration_since(at).as_secs_f64()
                })
            }
        }
    }

    /// The messages of the dead-letter topic's `partition` from `start` up to `end`, with their
    /// values when `values`.
    fn read(
        &self,
        partition: i32,
        start: i64,
        end: i64,
        values: bool,
    ) -> Result<Vec<Stored>, Error> {
        let reader = self.reader.lock().unwrap_or_else(|e| e.into_inner());
        let topic = &self.state.settings.kafka.dead_letter_topic;
        read_range(&reader, topic, partition, start, end, values)
    }

    fn dead_letter_range(&self) -> Result<Vec<(i32, i64, i64)>, Error> {
        let topic = &self.state.settings.kafka.dead_letter_topic;
        partitions_of(&self.ingest_group, topic)
            .map_err(unavailable)?
            .into_iter()
            .map(|p| {
                let (low, high) = self
                    .ingest_group
                    .fetch_watermarks(topic, p, ASK)
                    .map_err(|e| unavailable(e.to_string()))?;
                Ok((p, low, high))
            })
            .collect()
    }

    fn read_dead_letters(
        &self,
        before: Option<(i32, i64)>,
        limit: usize,
    ) -> Result<DeadLetterPage, Error> {
        let mut messages = Vec::new();
        let mut next_cursor = None;
        for (partition, low, high) in self.dead_letter_range()? {
            let end = match before {
                Some((p, _)) if partition < p => continue,
                Some((p, offset)) if partition == p => offset.min(high),
                _ => high,
            };
            let want = limit - messages.len();
            let start = low.max(end - want as i64);
            let mut read = self.read(partition, start, end, false)?;
            read.reverse();
            messages.extend(read.iter().map(describe));
            if messages.len() >= limit {
                // What is left: this partition below `start`, then the partitions after it.
                next_cursor = Some(format!("{partition}-{start}"));
                break;
            }
        }
        Ok(DeadLetterPage {
            messages,
            next_cursor,
        })
    }

    /// Sends one dead letter back to the images topic.
    async fn send_back(&self, message: &Stored) -> Result<(), Error> {
        let images = &self.state.settings.kafka.images_topic;
        let mut headers = OwnedHeaders::new();
        for (key, value) in &message.headers {
            if !OURS.contains(&key.as_str()) {
                headers = headers.insert(Header {
                    key,
                    value: value.as_deref(),
                });
            }
        }
        let count = (message.redrives + 1).to_string();
        headers = headers.insert(Header {
            key: REDRIVES,
            value: Some(count.as_str()),
        });
        // The original message's own key, so a message re-driven twice (or whose image was
        // stored meanwhile) replays instead of making a second image.
        if header(&message.headers, "idempotency-key").is_none()
            && let Some(original) = message.origin()
        {
            headers = headers.insert(Header {
                key: "idempotency-key",
                value: Some(original.as_str()),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(images)
            .payload(message.payload.as_deref().unwrap_or_default())
            .headers(headers);
        if let Some(key) = &message.key {
            record = record.key(key);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| unavailable(format!("the images topic did not take it: {e}")))?;
        self.state.metrics.stream_redriven.inc();
        Ok(())
    }
}

#[async_trait]
impl StreamAdmin for StreamConsole {
    async fn overview(&self) -> Result<StreamOverview, Error> {
        // librdkafka's calls block: the answers are a few round trips.
        let topics = tokio::task::block_in_place(|| {
            self.topics()
                .into_iter()
                .map(|(name, purpose, group)| self.topic_state(&name, purpose, group))
                .collect::<Vec<_>>()
        });
        let dead_letters = topics
            .iter()
            .find(|t| t.purpose == "dead-letters")
            .map_or(0, |t| {
                t.partitions
                    .iter()
                    .map(|p| (p.end_offset - p.start_offset).max(0) as u64)
                    .sum()
            });
        Ok(StreamOverview {
            enabled: true,
            topics,
            dead_letters,
        })
    }

    async fn dead_letters(
        &self,
        before: Option<(i32, i64)>,
        limit: usize,
    ) -> Result<DeadLetterPage, Error> {
        tokio::task::block_in_place(|| self.read_dead_letters(before, limit))
    }

    async fn redrive(&self, which: Option<Vec<(i32, i64)>>) -> Result<(u64, Vec<String>), Error> {
        let ranges = tokio::task::block_in_place(|| self.dead_letter_range())?;
        // What to send, as (partition, from, to) runs; each is read and sent a batch at a time,
        // so no more than a batch of values is held. Chosen ids go as runs of neighbours, and
        // an id the read does not return is reported missing.
        let mut missing = Vec::new();
        let exact = which.is_some();
        let runs: Vec<(i32, i64, i64)> = match which {
            None => {
                let mut left = REDRIVE_MAX as i64;
                ranges
                    .into_iter()
                    .map(|(partition, low, high)| {
                        let to = high.min(low + left);
                        left -= to - low;
                        (partition, low, to)
                    })
                    .collect()
            }
            Some(ids) => {
                let kept = ids.into_iter().filter(|&(partition, offset)| {
                    let kept = ranges
                        .iter()
                        .any(|&(p, low, high)| p == partition && (low..high).contains(&offset));
                    if !kept {
                        missing.push(format!("{partition}-{offset}"));
                    }
                    kept
                });
                neighbours(kept.collect())
            }
        };
        let mut sent = 0;
        for (partition, from, to) in runs {
            let mut start = from;
            while start < to {
                let end = to.min(start + BATCH);
                let batch = tokio::task::block_in_place(|| self.read(partition, start, end, true))?;
                if exact {
                    missing.extend(
                        (start..end)
                            .filter(|o| !batch.iter().any(|m| m.offset == *o))
                            .map(|o| format!("{partition}-{o}")),
                    );
                }
                for message in &batch {
                    self.send_back(message).await?;
                    sent += 1;
                }
                start = end;
            }
        }
        tracing::info!(
            redriven = sent,
            missing = missing.len(),
            "dead letters re-driven to the images topic"
        );
        Ok((sent, missing))
    }
}

/// Ids as runs `(partition, from, to)` of neighbouring offsets, each id once.
fn neighbours(mut ids: Vec<(i32, i64)>) -> Vec<(i32, i64, i64)> {
    ids.sort_unstable();
    ids.dedup();
    let mut runs: Vec<(i32, i64, i64)> = Vec::new();
    for (partition, offset) in ids {
        match runs.last_mut() {
            Some((p, _, to)) if *p == partition && *to == offset => *to += 1,
            _ => runs.push((partition, offset, offset + 1)),
        }
    }
    runs
}

/// A consumer of `group` that only looks: it never subscribes or commits.
fn looker(settings: &Settings, group: &str) -> anyhow::Result<ClientConfig> {
    let mut config = consumer_config(&settings.kafka, settings.limits.max_body_bytes)?;
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .remove("statistics.interval.ms");
    Ok(config)
}

fn partitions_of(client: &BaseConsumer, topic: &str) -> Result<Vec<i32>, String> {
    let metadata = client
        .fetch_metadata(Some(topic), ASK)
        .map_err(|e| format!("the brokers did not answer: {e}"))?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err("no such topic".to_owned());
    };
    if let Some(e) = found.error() {
        return Err(format!("{:?}", rdkafka::types::RDKafkaErrorCode::from(e)));
    }
    let mut partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    partitions.sort_unstable();
    Ok(partitions)
}

/// Each partition of `topic`: its offsets, and `group`'s committed offset and lag.
fn read_partitions(
    client: &BaseConsumer,
    topic: &str,
    group: Option<&BaseConsumer>,
) -> Result<Vec<PartitionState>, String> {
    let ids = partitions_of(client, topic)?;
    let committed: HashMap<i32, i64> = match group {
        Some(group) => {
            let mut asked = TopicPartitionList::new();
            for &p in &ids {
                asked.add_partition(topic, p);
            }
            group
                .committed_offsets(asked, ASK)
                .map_err(|e| format!("the group's offsets: {e}"))?
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect()
        }
        None => HashMap::new(),
    };
    ids.into_iter()
        .map(|partition| {
            let (low, high) = client
                .fetch_watermarks(topic, partition, ASK)
                .map_err(|e| format!("partition {partition}: {e}"))?;
            let committed = committed.get(&partition).copied();
            // A group with nothing committed reads from the start (`auto.offset.reset`).
            let read_from = committed.unwrap_or(low).max(low);
            Ok(PartitionState {
                partition,
                start_offset: low,
                end_offset: high,
                committed,
                lag: group.is_some().then_some((high - read_from).max(0)),
            })
        })
        .collect()
}

/// A dead letter as read, owned.
struct Stored {
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<Vec<u8>>,
    /// The value, when it was asked for (a re-drive); its size in any case.
    payload: Option<Vec<u8>>,
    bytes: usize,
    headers: Vec<(String, Option<Vec<u8>>)>,
    redrives: u32,
}

impl Stored {
    fn from(message: &BorrowedMessage<'_>, values: bool) -> Self {
        let headers: Vec<(String, Option<Vec<u8>>)> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        let redrives = header(&headers, REDRIVES)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Self {
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp().to_millis(),
            key: message.key().map(<[u8]>::to_vec),
            payload: values.then(|| message.payload().unwrap_or_default().to_vec()),
            bytes: message.payload_len(),
            headers,
            redrives,
        }
    }

    /// The idempotency key the stream gave the message it was refused as (its position).
    fn origin(&self) -> Option<String> {
        let topic = header(&self.headers, "imagelake-source-topic")?;
        let partition = header(&self.headers, "imagelake-source-partition")?
            .parse()
            .ok()?;
        let offset = header(&self.headers, "imagelake-source-offset")?
            .parse()
            .ok()?;
        Some(crate::message::position_key(&topic, partition, offset))
    }
}

fn header(headers: &[(String, Option<Vec<u8>>)], name: &str) -> Option<String> {
    headers
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

fn describe(message: &Stored) -> DeadLetterMessage {
    let get = |name| header(&message.headers, name);
    DeadLetterMessage {
        id: format!("{}-{}", message.partition, message.offset),
        partition: message.partition,
        offset: message.offset,
        timestamp: message
            .timestamp
            .and_then(chrono::DateTime::from_timestamp_millis),
        error_code: get("imagelake-error-code"),
        error_message: get("imagelake-error-message"),
        source_topic: get("imagelake-source-topic"),
        source_partition: get("imagelake-source-partition").and_then(|v| v.parse().ok()),
        source_offset: get("imagelake-source-offset").and_then(|v| v.parse().ok()),
        customer_id: get("customer-id"),
        redrives: message.redrives,
        bytes: message.bytes,
        headers: message
            .headers
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| !OURS.contains(&k.as_str()) && k != "customer-id")
            .collect(),
    }
}

/// The messages of `partition` from `start` up to `end` (excluded), by assignment; with their
/// values when `values`.
fn read_range(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    start: i64,
    end: i64,
    values: bool,
) -> Result<Vec<Stored>, Error> {
    if start >= end {
        return Ok(Vec::new());
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Offset(start))
        .map_err(|e| internal(anyhow::anyhow!(e)))?;
    reader
        .assign(&assignment)
        .map_err(|e| internal(anyhow::anyhow!(e)))?;
    let deadline = Instant::now() + ASK;
    let mut out = Vec::new();
    while out.last().is_none_or(|m: &Stored| m.offset + 1 < end) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(unavailable(format!(
                "the dead-letter topic did not deliver offsets {start} to {end} within {} s",
                ASK.as_secs()
            )));
        }
        match reader.poll(left) {
            Some(Ok(message)) if message.partition() == partition => {
                if message.offset() >= end {
                    break;
                }
                out.push(Stored::from(&message, values));
            }
            Some(Ok(_)) | None => {}
            Some(Err(e)) => return Err(unavailable(e.to_string())),
        }
    }
    Ok(out)
}

fn internal(e: anyhow::Error) -> Error {
    Error::internal(&format!("{e:#}"))
}

fn unavailable(message: impl Into<String>) -> Error {
    Error::new(
        imagelake_core::ErrorCode::Unavailable,
        format!("Kafka: {}", message.into()),
    )
}

#[cfg(test)]
mod tests {
    use super::neighbours;

    #[test]
    fn chosen_ids_go_as_runs_of_neighbours() {
        let ids = vec![
            (1, 7),
            (0, 3),
            (0, 4),
            (0, 4),
            (0, 6),
            (1, 8),
            (0, 5),
            (2, 0),
        ];
        assert_eq!(neighbours(ids), [(0, 3, 7), (1, 7, 9), (2, 0, 1)]);
        assert!(neighbours(Vec::new()).is_empty());
    }
}
