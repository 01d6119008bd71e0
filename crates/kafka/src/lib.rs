//! The internal image stream: company engineers push images through a Kafka topic, and each
//! message is stored, recorded and processed exactly like an API upload (`ingest::accept`).
//!
//! Delivery is at least once and nothing is stored twice. A message's offset is stored for commit
//! only after its image is durably stored and recorded (or after a refused message is durably on
//! the dead-letter topic); librdkafka commits stored offsets in the background, and on shutdown
//! they are committed before the consumer leaves. A message that comes again (a consumer died
//! before its commit, a rebalance) carries the same idempotency key, `kafka:{topic}:{partition}:
//! {offset}` unless the producer sent its own `idempotency-key`, so it replays instead of creating
//! a second image.
//!
//! A message that can never be accepted (unknown customer, missing header, not an image, a pixel
//! bomb, a refused claim) goes to the dead-letter topic with `imagelake-error-code` and
//! `imagelake-error-message` headers and the partition moves on; a transient failure (storage or
//! metadata down) is retried in place, so the partition waits rather than loses anything.

mod admin;
mod console;
mod ingest;
pub mod message;
mod produce;
mod publish;
mod reach;
mod stats;

pub use admin::{Created, Layout, create_topics};
pub use console::StreamConsole;
pub use ingest::{ImageStream, check_config, consumer_config, producer_config, run};
pub use message::{CLAIM_CONTENT_TYPE, Claim};
pub use produce::{ImageProducer, Outgoing};
pub use publish::Publisher;
pub use reach::REACH_TIMEOUT;
pub use stats::{brokers_up, partitions};
