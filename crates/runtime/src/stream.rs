//! The Kafka side as the console sees it: topics, partitions and the consumer groups' lag, the
//! image stream's dead letters, and re-driving them to the images topic. `imagelake-kafka`
//! implements [`StreamAdmin`]; the HTTP door holds an `Arc<dyn StreamAdmin>` where brokers are
//! set, so it knows nothing of librdkafka.

use async_trait::async_trait;
use imagelake_core::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

use crate::Error;

/// Every topic of the deployment, with the lag of the group that reads it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StreamOverview {
    /// False where `kafka.brokers` is not set: then nothing else is filled in.
    pub enabled: bool,
    pub topics: Vec<TopicState>,
    /// Messages on the dead-letter topic (within its retention).
    pub dead_letters: u64,
}

impl StreamOverview {
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            topics: Vec::new(),
            dead_letters: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopicState {
    pub name: String,
    /// `images`, `dead-letters`, `events`, `requests` or `lake:<table>`.
    pub purpose: String,
    /// The consumer group that reads it here; none for the dead-letter topic.
    pub group: Option<String>,
    pub partitions: Vec<PartitionState>,
    /// Messages the group has not read yet, over every partition; `null` for a topic no group
    /// reads here.
    pub lag: Option<i64>,
    /// Messages arriving per second since the previous look (`null` on the first).
    pub messages_per_second: Option<f64>,
    /// Why the topic could not be read (missing, no leader), when it could not.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartitionState {
    pub partition: i32,
    /// The oldest offset still kept.
    pub start_offset: i64,
    /// The offset the next message will get.
    pub end_offset: i64,
    /// The group's committed offset, if it has one.
    pub committed: Option<i64>,
    /// From the committed offset (from the start when there is none) to the end; `null` for a
    /// topic no group reads here.
    pub lag: Option<i64>,
}

/// A message of the dead-letter topic: where it came from and why it was refused; not its bytes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadLetterMessage {
    /// `{partition}-{offset}` on the dead-letter topic: what a re-drive names.
    pub id: String,
    pub partition: i32,
    pub offset: i64,
    /// When it reached the dead-letter topic.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub timestamp: Option<Timestamp>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub source_topic: Option<String>,
    pub source_partition: Option<i32>,
    pub source_offset: Option<i64>,
    /// The `customer-id` header it came with.
    pub customer_id: Option<String>,
    /// Times it was re-driven before it came back here.
    pub redrives: u32,
    /// Size of the value.
    pub bytes: usize,
    /// The names of its other headers.
    pub headers: Vec<String>,
}

/// Dead letters, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadLetterPage {
    pub messages: Vec<DeadLetterMessage>,
    /// Pass as `cursor` for older messages; null when there are none.
    pub next_cursor: Option<String>,
}

/// The Kafka stream's administration.
#[async_trait]
pub trait StreamAdmin: Send + Sync + 'static {
    async fn overview(&self) -> Result<StreamOverview, Error>;

    /// Up to `limit` dead letters older than `before` (`(partition, offset)`), newest first.
    async fn dead_letters(
        &self,
        before: Option<(i32, i64)>,
        limit: usize,
    ) -> Result<DeadLetterPage, Error>;

    /// Produces each dead letter named (`(partition, offset)`), or every one when `None`, back to
    /// the images topic with its original headers and a re-drive count one higher; returns
    /// those sent and the ids not found.
    async fn redrive(&self, which: Option<Vec<(i32, i64)>>) -> Result<(u64, Vec<String>), Error>;
}
