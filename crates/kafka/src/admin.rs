//! Creating imagelake's topics through the Kafka admin API (`imagelake kafka create-topics`), with
//! the settings each needs: the images and dead-letter topics take records as large as the
//! largest accepted image, and the events topic keeps its records for the retention window, the
//! same as the lake.

use std::time::Duration;

use imagelake_runtime::settings::Settings;
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    types::RDKafkaErrorCode,
};

/// How the topics are laid out.
pub struct Layout {
    /// Partitions of the images and events topics: the most consumers (or lake readers) that can
    /// be busy at once. The dead-letter topic has one.
    pub partitions: i32,
    pub replication: i32,
}

/// What happened to one topic.
#[derive(Debug, PartialEq, Eq)]
pub enum Created {
    Created,
    /// It was there already; its layout is left as it is.
    Exists,
}

/// Creates the images, dead-letter, events and requests topics of `settings` on `brokers`, and
/// the topic of each declared lake table.
pub async fn create_topics(
    settings: &Settings,
    brokers: &str,
    layout: &Layout,
) -> anyhow::Result<Vec<(String, Created)>> {
    let kafka = &settings.kafka;
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in &kafka.config {
        config.set(key, value);
    }
    let reach = brokers.to_owned();
    let admin = tokio::task::spawn_blocking(move || {
        let admin: AdminClient<DefaultClientContext> = config.create()?;
        crate::reach::check(admin.inner(), &reach, None).map(|()| admin)
    })
    .await??;
    let record_room = (settings.limits.max_body_bytes + (1 << 20)).to_string();
    let retention_ms = settings.retention.0.as_millis().to_string();
    let replication = || TopicReplication::Fixed(layout.replication);
    // The lake's sources are kept as long as the lake keeps their hours.
    let lake_retention_ms = settings.lake_retention().0.as_millis().to_string();
    let lake_topics: Vec<String> = settings
        .lake
        .tables
        .iter()
        .map(|t| t.source_topic())
        .collect();
    let mut topics = vec![
        NewTopic::new(&kafka.images_topic, layout.partitions, replication())
            .set("max.message.bytes", &record_room),
        NewTopic::new(&kafka.dead_letter_topic, 1, replication())
            .set("max.message.bytes", &record_room),
        NewTopic::new(&kafka.events_topic, layout.partitions, replication())
            .set("retention.ms", &retention_ms),
        NewTopic::new(&kafka.requests_topic, layout.partitions, replication())
            .set("retention.ms", &lake_retention_ms),
    ];
    for topic in &lake_topics {
        topics.push(
            NewTopic::new(topic, layout.partitions, replication())
                .set("retention.ms", &lake_retention_ms),
        );
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut out = Vec::new();
    for result in admin.create_topics(&topics, &options).await? {
        match result {
            Ok(name) => out.push((name, Created::Created)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => out.push((name, Created::Exists)),
            Err((name, code)) => anyhow::bail!("creating topic {name}: {code}"),
        }
    }
    Ok(out)
}
