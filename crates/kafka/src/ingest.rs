//! The consumer loop of the image stream (see the crate docs for the guarantees).

use std::time::Duration;

use imagelake_core::{ErrorCode, records::Source};
use imagelake_runtime::{
    AppState, Error,
    ingest::{self, Accepted, Upload},
    metrics::STREAM_RATE_WINDOW,
    settings::Kafka,
    tasks::{Step, Task},
};
use object_store::ObjectStoreExt;
use rdkafka::{
    ClientConfig, ClientContext, Message, Statistics,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    error::KafkaError,
    message::{BorrowedMessage, Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
    types::RDKafkaErrorCode,
};
use tokio_util::sync::CancellationToken;

use crate::message::{self, Body};

/// First wait before a message that failed for a transient reason is tried again.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// librdkafka settings shared by the consumer and the dead-letter producer; each adds its own
/// and then the passthrough settings, which win.
fn base_config(settings: &Kafka, max_body_bytes: u64) -> anyhow::Result<ClientConfig> {
    let brokers = settings
        .brokers
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("kafka.brokers is not set"))?;
    let mut config = ClientConfig::new();
    // Records may carry whole images; the claim-check form covers brokers that refuse them.
    let room = (max_body_bytes + (1 << 20)).to_string();
    config
        .set("bootstrap.servers", brokers)
        .set("message.max.bytes", &room)
        .set(
            "receive.message.max.bytes",
            (max_body_bytes + (2 << 20)).to_string(),
        );
    Ok(config)
}

/// Refuses settings librdkafka would refuse (an unknown `[kafka.config]` key, a bad value, a
/// security protocol this build lacks) before a process starts, rather than in a task that
/// would fail behind a listening port.
pub fn check_config(settings: &Kafka, max_body_bytes: u64) -> anyhow::Result<()> {
    let refused = |e: rdkafka::error::KafkaError| anyhow::anyhow!("[kafka] settings: {e}");
    consumer_config(settings, max_body_bytes)?
        .create::<BaseConsumer>()
        .map_err(refused)?;
    producer_config(settings, max_body_bytes)?
        .create::<rdkafka::producer::BaseProducer>()
        .map_err(refused)?;
    Ok(())
}

/// The consumer's settings: manual offset storage (only after an image is durable), background
/// commits of what was stored, and fetch sizes that fit the largest accepted image.
pub fn consumer_config(settings: &Kafka, max_body_bytes: u64) -> anyhow::Result<ClientConfig> {
    let mut config = base_config(settings, max_body_bytes)?;
    let room = (max_body_bytes + (1 << 20)).to_string();
    config
        .set("group.id", &settings.group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", &room)
        .set("max.partition.fetch.bytes", &room)
        .set("statistics.interval.ms", "2000")
        // A topic created after the consumer started is found within seconds, not minutes.
        .set("topic.metadata.refresh.interval.ms", "10000");
    for (key, value) in &settings.config {
        config.set(key, value);
    }
    Ok(config)
}

pub fn producer_config(settings: &Kafka, max_body_bytes: u64) -> anyhow::Result<ClientConfig> {
    let mut config = base_config(settings, max_body_bytes)?;
    config.set("enable.idempotence", "true").set("acks", "all");
    for (key, value) in &settings.config {
        // Consumer-only settings would make the producer refuse to start.
        if !key.starts_with("group.")
            && !key.starts_with("session.")
            && !key.starts_with("auto.")
            && !key.starts_with("fetch.")
            && !key.starts_with("enable.auto")
            && key != "max.partition.fetch.bytes"
            && key != "heartbeat.interval.ms"
            && key != "max.poll.interval.ms"
        {
            config.set(key, value);
        }
    }
    Ok(config)
}

/// Reports the brokers' reachability to `/readyz` and the lag per partition to `/metrics`, from
/// librdkafka's statistics and errors.
struct StreamContext {
    state: AppState,
    /// Whether the process is unready while the brokers are out of reach (`kafka-ingest`).
    required: bool,
    /// Samples of the settled-message count, for the messages-per-second gauge.
    samples: std::sync::Mutex<std::collections::VecDeque<(std::time::Instant, u64)>>,
}

impl StreamContext {
    /// Sets the messages-per-second gauge from the settled count's change over the window.
    fn update_rate(&self) {
        let metrics = &self.state.metrics;
        let now = std::time::Instant::now();
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.push_back((now, metrics.stream_settled.get()));
        while samples.len() > 2
            && samples
                .get(1)
                .is_some_and(|(at, _)| now.duration_since(*at) >= STREAM_RATE_WINDOW)
        {
            samples.pop_front();
        }
        if let (Some((first, from)), Some((last, to))) = (samples.front(), samples.back()) {
            let seconds = last.duration_since(*first).as_secs_f64();
            if seconds > 0.0 {
                metrics.stream_rate.set((to - from) as f64 / seconds);
            }
        }
    }
}

impl ClientContext for StreamContext {
    fn stats(&self, statistics: Statistics) {
        let state = if crate::brokers_up(&statistics) {
            "ok"
        } else {
            "unreachable"
        };
        self.state.health.report("kafka", state, self.required);
        self.update_rate();
        for (topic, partition, p) in crate::partitions(&statistics) {
            if p.consumer_lag >= 0 {
                let labels = vec![
                    ("topic", topic.to_owned()),
                    ("partition", partition.to_string()),
                ];
                self.state
                    .metrics
                    .stream_lag
                    .get_or_create(&labels)
                    .set(p.consumer_lag);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.state
                .health
                .report("kafka", "unreachable", self.required);
        }
        tracing::warn!(%error, reason, "image stream: Kafka client error");
    }
}

impl ConsumerContext for StreamContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |list: &rdkafka::TopicPartitionList| -> Vec<i32> {
            list.elements().iter().map(|e| e.partition()).collect()
        };
        match rebalance {
            Rebalance::Assign(list) => {
                tracing::info!(partitions = ?partitions(list), "image stream: partitions assigned");
            }
            Rebalance::Revoke(list) => {
                tracing::info!(partitions = ?partitions(list), "image stream: partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "image stream: rebalance failed"),
        }
    }
}

/// The image stream consumer as a task: each step takes one message to its end (stored, or on
/// the dead-letter topic) and stores its offset for commit; `finish` commits what was stored.
/// With `required`, the process is not ready while the brokers are out of reach.
pub struct ImageStream {
    state: AppState,
    settings: Kafka,
    consumer: StreamConsumer<StreamContext>,
    producer: FutureProducer,
}

impl ImageStream {
    /// Creates the consumer and the dead-letter producer and subscribes to the images topic.
    pub fn connect(state: AppState, required: bool) -> anyhow::Result<Self> {
        let settings = state.settings.kafka.clone();
        let max_body = state.settings.limits.max_body_bytes;
        state.health.report("kafka", "connecting", required);
        let context = StreamContext {
            state: state.clone(),
            required,
            samples: Default::default(),
        };
        let consumer: StreamConsumer<StreamContext> =
            consumer_config(&settings, max_body)?.create_with_context(context)?;
        let producer: FutureProducer = producer_config(&settings, max_body)?.create()?;
        consumer.subscribe(&[&settings.images_topic])?;
        tracing::info!(topic = %settings.images_topic, group = %settings.group_id, "image stream consumer started");
        Ok(Self {
            state,
            settings,
            consumer,
            producer,
        })
    }
}

#[async_trait::async_trait]
impl Task for ImageStream {
    async fn step(&mut self, stop: &CancellationToken) -> anyhow::Result<Step> {
        let received = tokio::select! {
            () = stop.cancelled() => return Ok(Step::Idle),
            received = self.consumer.recv() => received,
        };
        let message = match received {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(error = %e, "image stream: broker error");
                return Ok(Step::Idle);
            }
        };
        if settle(&self.state, &self.producer, &self.settings, &message, stop).await
            && let Err(e) = self.consumer.store_offset_from_message(&message)
        {
            // The partition moved to another consumer meanwhile; it gets the message again and
            // replays its idempotency key.
            tracing::warn!(error = %e, offset = message.offset(), "image stream: offset not stored");
        }
        Ok(Step::Busy)
    }

    /// After a broker error: a second before the next message.
    async fn wait(&mut self, stop: &CancellationToken) {
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }

    async fn finish(&mut self) {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => {}
            // Nothing was stored since the last commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "image stream: final commit failed; the last messages come again");
            }
        }
    }
}

/// Consumes the images topic until `cancel` without a supervisor (tools and benchmarks); stored
/// offsets are committed before it returns.
pub async fn run(state: AppState, cancel: CancellationToken, required: bool) -> anyhow::Result<()> {
    let mut stream = ImageStream::connect(state, required)?;
    while !cancel.is_cancelled() {
        if stream.step(&cancel).await? == Step::Idle {
            stream.wait(&cancel).await;
        }
    }
    stream.finish().await;
    Ok(())
}

/// Takes one message to its end: stored, or on the dead-letter topic. Transient failures are
/// retried with backoff; returns false only when cancelled first (the message then comes again).
async fn settle(
    state: &AppState,
    producer: &FutureProducer,
    settings: &Kafka,
    message: &BorrowedMessage<'_>,
    cancel: &CancellationToken,
) -> bool {
    let mut wait = RETRY_FIRST;
    loop {
        let result = match take(state, settings, message).await {
            Ok(accepted) => {
                let outcome = match accepted {
                    Accepted::Created(_) => "created",
                    Accepted::Duplicate(_) => "duplicate",
                    Accepted::Replayed(_) => "replay",
                };
                state.metrics.stream(outcome);
                let image_id = accepted
                    .image_id()
                    .map(|id| id.to_string())
                    .unwrap_or_default();
                tracing::debug!(partition = message.partition(), offset = message.offset(), outcome, %image_id, "stream message stored");
                return true;
            }
            Err(refused) if refused.code != ErrorCode::Internal => {
                dead_letter(state, producer, settings, message, &refused).await
            }
            Err(transient) => Err(transient),
        };
        match result {
            Ok(()) => return true,
            Err(error) => {
                tracing::warn!(partition = message.partition(), offset = message.offset(), %error, ?wait, "image stream: will try the message again");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// Stores and records the message's image as an upload.
async fn take(
    state: &AppState,
    settings: &Kafka,
    message: &BorrowedMessage<'_>,
) -> Result<Accepted, Error> {
    let request = message::parse(message, &settings.claims_prefix)?;
    if state.store.get_customer(request.customer).await?.is_none() {
        return Err(Error::not_found(format!(
            "no customer {}",
            request.customer
        )));
    }
    let limit = state.settings.limits.max_body_bytes;
    let (bytes, claim) = match request.body {
        Body::Bytes(bytes) => (bytes, None),
        Body::Claim(location) => {
            let found = match state.objects.get(&location).await {
                Ok(found) => found,
                Err(object_store::Error::NotFound { .. }) => {
                    return taken_before(state, &request.idempotency_key, request.customer)
                        .await?
                        .ok_or_else(|| {
                            Error::not_found(format!("claim object {location} does not exist"))
                        });
                }
                Err(other) => return Err(Error::internal(&other)),
            };
            if found.meta.size > limit {
                let (customer, key) = (request.customer, &request.idempotency_key);
                return Err(refuse(
                    state,
                    customer,
                    key,
                    Error::too_large(limit),
                    found.meta.size,
                )
                .await);
            }
            let bytes = found.bytes().await.map_err(|e| Error::internal(&e))?;
            (bytes, Some(location))
        }
    };
    if bytes.len() as u64 > limit {
        let size = bytes.len() as u64;
        let (customer, key) = (request.customer, &request.idempotency_key);
        return Err(refuse(state, customer, key, Error::too_large(limit), size).await);
    }
    let accepted = ingest::accept(
        state,
        Upload {
            customer: request.customer,
            bytes,
            filename: request.filename,
            idempotency_key: Some(request.idempotency_key.clone()),
            source: Source::Kafka,
            // The message's key or position: a redelivery is the same event.
            delivery: Some(request.idempotency_key),
        },
    )
    .await?;
    if let Some(location) = claim {
        // The image is stored under originals/ now; the claim is only a leftover.
        if let Err(e) = state.objects.delete(&location).await {
            tracing::warn!(%location, error = %e, "could not remove a claim that was taken in");
        }
    }
    Ok(accepted)
}

/// Records `upload.refused` for a message refused before `ingest::accept` (which records its
/// own), and gives the refusal back.
async fn refuse(
    state: &AppState,
    customer: imagelake_core::CustomerId,
    delivery: &str,
    refusal: Error,
    bytes: u64,
) -> Error {
    ingest::refused(
        state,
        customer,
        Source::Kafka,
        &refusal,
        bytes,
        Some(delivery),
    )
    .await;
    refusal
}

/// The answer for a claim whose object is gone because it was taken in already: the message came
/// again (a crash or a rebalance after the claim was removed, before the offset was committed).
async fn taken_before(
    state: &AppState,
    idempotency_key: &str,
    customer: imagelake_core::CustomerId,
) -> Result<Option<Accepted>, Error> {
    let previous = state
        .store
        .find_idempotent(customer, idempotency_key)
        .await?;
    Ok(previous.map(|previous| ingest::replayed(state, &previous)))
}

/// Publishes a refused message, with why, to the dead-letter topic and waits for the broker.
async fn dead_letter(
    state: &AppState,
    producer: &FutureProducer,
    settings: &Kafka,
    message: &BorrowedMessage<'_>,
    refused: &Error,
) -> Result<(), Error> {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for h in original.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    for (key, value) in [
        ("imagelake-error-code", refused.code.as_str()),
        ("imagelake-error-message", refused.message.as_str()),
        ("imagelake-source-topic", message.topic()),
        ("imagelake-source-partition", partition.as_str()),
        ("imagelake-source-offset", offset.as_str()),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let mut record = FutureRecord::<[u8], [u8]>::to(&settings.dead_letter_topic)
        .payload(message.payload().unwrap_or_default())
        .headers(headers);
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| Error::internal(&format!("dead-letter topic unreachable: {e}")))?;
    state.metrics.stream("dead_letter");
    tracing::info!(partition = message.partition(), offset = message.offset(), code = %refused.code, reason = %refused.message, "image stream: message moved to the dead letters");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::BaseConsumer;

    #[test]
    fn security_settings_pass_through_to_librdkafka() {
        let settings = Kafka {
            brokers: Some("127.0.0.1:1".into()),
            config: [
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", "SCRAM-SHA-512"),
                ("sasl.username", "ingest"),
                ("sasl.password", "secret"),
                ("session.timeout.ms", "6000"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ..Kafka::default()
        };
        let consumer: BaseConsumer = consumer_config(&settings, 1 << 20)
            .unwrap()
            .create()
            .expect("this build speaks SSL and SCRAM");
        drop(consumer);
        let producer: rdkafka::producer::BaseProducer = producer_config(&settings, 1 << 20)
            .unwrap()
            .create()
            .expect("consumer-only settings are kept from the producer");
        drop(producer);
        check_config(&settings, 1 << 20).unwrap();
        let refused = Kafka {
            config: [("no.such.setting".to_owned(), "1".to_owned())].into(),
            ..settings
        };
        let said = check_config(&refused, 1 << 20).unwrap_err().to_string();
        assert!(said.contains("no.such.setting"), "{said}");
    }
}
