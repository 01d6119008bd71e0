//! Pushing images into the stream, for the engineers who feed it (`imagelake kafka produce`):
//! raw records, or claim-checks for files above a size, each waiting for the broker's
//! acknowledgement from an idempotent producer.

use std::time::Duration;

use rdkafka::{
    ClientConfig,
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
};

use crate::message::{CLAIM_CONTENT_TYPE, Claim};

/// An idempotent producer to one images topic.
pub struct ImageProducer {
    producer: FutureProducer,
    topic: String,
}

/// One image for one customer.
pub struct Outgoing<'a> {
    pub customer: &'a str,
    pub filename: &'a str,
    /// Makes a second push of the same file a replay rather than a second image.
    pub idempotency_key: &'a str,
}

impl ImageProducer {
    /// `config` is passed through to librdkafka after the defaults (security settings, ...).
    /// Fails within [`crate::REACH_TIMEOUT`] when the brokers cannot be reached or the topic
    /// does not exist, rather than letting each message time out.
    pub async fn connect(
        brokers: &str,
        topic: &str,
        max_message_bytes: u64,
        config: &std::collections::BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "zstd")
            // A mistyped topic is an error, not a new topic with the broker's default layout.
            .set("allow.auto.create.topics", "false")
            .set(
                "message.max.bytes",
                (max_message_bytes + (1 << 20)).to_string(),
            );
        for (key, value) in config {
            client.set(key, value);
        }
        let producer: FutureProducer = client.create()?;
        let (probe, brokers, topic_name) = (producer.clone(), brokers.to_owned(), topic.to_owned());
        tokio::task::spawn_blocking(move || {
            crate::reach::check(probe.client(), &brokers, Some(&topic_name))
        })
        .await??;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Sends the image bytes as the record's value.
    pub async fn send_bytes(&self, out: &Outgoing<'_>, bytes: &[u8]) -> anyhow::Result<()> {
        self.send(out, None, bytes).await
    }

    /// Sends a claim-check naming `object`, where the bytes already wait.
    pub async fn send_claim(&self, out: &Outgoing<'_>, object: &str) -> anyhow::Result<()> {
        let claim = serde_json::to_vec(&Claim {
            object: object.to_owned(),
        })?;
        self.send(out, Some(CLAIM_CONTENT_TYPE), &claim).await
    }

    async fn send(
        &self,
        out: &Outgoing<'_>,
        content_type: Option<&str>,
        value: &[u8],
    ) -> anyhow::Result<()> {
        let mut headers = OwnedHeaders::new();
        for (key, value) in [
            ("customer-id", Some(out.customer)),
            ("filename", Some(out.filename)),
            ("idempotency-key", Some(out.idempotency_key)),
            ("content-type", content_type),
        ] {
            if let Some(value) = value {
                headers = headers.insert(Header {
                    key,
                    value: Some(value),
                });
            }
        }
        // Keyed by customer: one customer's images stay in order on one partition.
        let record = FutureRecord::to(&self.topic)
            .key(out.customer)
            .payload(value)
            .headers(headers);
        self.producer
            .send(record, Duration::from_secs(60))
            .await
            .map(drop)
            .map_err(|(e, _)| anyhow::anyhow!("the broker did not take the message: {e}"))
    }
}
