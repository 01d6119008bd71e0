//! The lake's doors of a deployment with brokers: records posted to `POST /v1/lake/{table}/
//! records` and the API's request records go to Kafka, where the lake writers read them, never
//! to a local buffer that would die with its pod.
//!
//! A post is answered once every line is on the brokers (`acks=all`, idempotent producer). Every
//! line goes, the ones that do not fit too: the writer checks each record again against the
//! same table with the message's timestamp (the time the door received it), so it quarantines
//! exactly the lines the answer names. Records with an id are keyed by it, so a record sent
//! twice lands on one partition, where the writer keeps it once per hour written.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use imagelake_core::{Timestamp, lake as tables};
use imagelake_runtime::{
    AppState, Error,
    lake::{ApiRequest, Appended, LakeDoor},
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use crate::{Tables, door::lines};

/// A post waits this long for the brokers before it fails (and the sender tries again).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

pub struct KafkaDoor {
    tables: Arc<Tables>,
    producer: FutureProducer,
    /// The request records' own producer, with a bounded queue.
    requests: FutureProducer,
    /// The topic of each declared table.
    topics: BTreeMap<String, String>,
    requests_topic: String,
}

impl KafkaDoor {
    pub async fn connect(state: &AppState) -> anyhow::Result<Self> {
        let settings = &state.settings;
        let tables = Arc::new(Tables::open(state).await?);
        let config =
            imagelake_kafka::producer_config(&settings.kafka, settings.lake.max_request_bytes)?;
        let producer: FutureProducer = config.clone().set("compression.type", "zstd").create()?;
        // Request records are dropped, never queued without bound, when the brokers are slow.
        let requests: FutureProducer = config
            .clone()
            .set(
                "queue.buffering.max.messages",
                settings.lake.request_buffer.max(1).to_string(),
            )
            .set("compression.type", "zstd")
            .create()?;
        let topics = settings
            .lake
            .tables
            .iter()
            .map(|t| (t.name.clone(), t.source_topic()))
            .collect();
        Ok(Self {
            tables,
            producer,
            requests,
            topics,
            requests_topic: settings.kafka.requests_topic.clone(),
        })
    }
}

#[async_trait]
impl LakeDoor for KafkaDoor {
    fn has_table(&self, table: &str) -> bool {
        self.tables.postable(table).is_some()
    }

    async fn append(
        &self,
        table: &str,
        body: Bytes,
        received_at: Timestamp,
    ) -> Result<Appended, Error> {
        let (dataset, topic) = match (self.tables.postable(table), self.topics.get(table)) {
            (Some(d), Some(t)) => (d, t),
            _ => return Err(Error::not_found(format!("no lake table {table:?}"))),
        };
        // Checked at the precision of the message's timestamp, as the writer checks it.
        let millis = received_at.timestamp_millis();
        let received_at = chrono::DateTime::from_timestamp_millis(millis).unwrap_or(received_at);
        let (entries, quarantined) = self.tables.check_lines(dataset, &body, received_at);
        let accepted = (entries.len() - quarantined.len()) as u64;
        let sends = lines(&body).zip(entries).map(|((_, raw), entry)| {
            let record = FutureRecord::<str, [u8]>::to(topic)
                .payload(raw)
                .timestamp(millis);
            let id = entry.id;
            let producer = &self.producer;
            async move {
                let record = match &id {
                    Some(id) => record.key(id.as_str()),
                    None => record,
                };
                producer.send(record, SEND_TIMEOUT).await
            }
        });
        for sent in futures::future::join_all(sends).await {
            sent.map_err(|(e, _)| {
                let mut error = Error::new(
                    imagelake_core::ErrorCode::Unavailable,
                    format!("the lake's brokers did not take the records ({e}); post them again"),
                );
                error.retry_after = Some(5);
                error
            })?;
        }
        Ok(Appended {
            accepted,
            duplicates: 0,
            quarantined,
        })
    }

    fn record_request(&self, request: ApiRequest) {
        let row = Value::Object(Tables::request_row(&request)).to_string();
        let record = FutureRecord::<(), str>::to(&self.requests_topic)
            .payload(&row)
            .timestamp(request.at.timestamp_millis());
        let dropped = crate::metrics_table(&self.tables.metrics.lake.dropped, tables::API_REQUESTS);
        match self.requests.send_result(record) {
            // Counted too when the brokers refuse it later (the delivery report).
            Ok(delivery) => {
                tokio::spawn(async move {
                    if !matches!(delivery.await, Ok(Ok(_))) {
                        dropped.inc();
                    }
                });
            }
            Err(_) => {
                dropped.inc();
            }
        }
    }
}
