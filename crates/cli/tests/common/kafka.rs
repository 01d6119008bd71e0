//! Kafka helpers for the tests that run against the broker `scripts/test` starts.

use std::time::{Duration, Instant};

use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    error::KafkaError,
    message::{Header, OwnedHeaders, OwnedMessage},
    producer::{FutureProducer, FutureRecord},
};

pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect(
        "KAFKA_BROKERS is not set: run the tests through scripts/test, which starts the broker",
    )
}

/// Creates topics through the admin API, as `(name, partitions)`.
pub async fn create_topics(topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    for result in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .unwrap()
    {
        result.unwrap();
    }
}

/// Every record of `topic`, each partition read to its end.
pub fn read_to_end(topic: &str) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("{topic}-to-end"))
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut all = rdkafka::TopicPartitionList::new();
    let mut open = std::collections::HashSet::new();
    for p in metadata.topics()[0].partitions() {
        all.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
            .unwrap();
        open.insert(p.id());
    }
    consumer.assign(&all).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while !open.is_empty() {
        assert!(Instant::now() < deadline, "{topic} was not read to its end");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => panic!("{e}"),
            Some(Ok(message)) => out.push(message.detach()),
        }
    }
    out
}

/// A producer on the test broker that takes records as large as the biggest photo.
pub fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("message.max.bytes", "60000000")
        .create()
        .unwrap()
}

/// Produces `payload` with `headers` to `topic`, and waits for the broker to have it.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    headers: &[(&str, &str)],
    payload: &[u8],
) {
    produce_to(producer, topic, None, headers, payload).await;
}

/// [`produce`] to one partition.
pub async fn produce_to(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    headers: &[(&str, &str)],
    payload: &[u8],
) {
    let mut owned = OwnedHeaders::new();
    for (key, value) in headers {
        owned = owned.insert(Header {
            key,
            value: Some(*value),
        });
    }
    let mut record = FutureRecord::<str, [u8]>::to(topic)
        .payload(payload)
        .headers(owned);
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}
