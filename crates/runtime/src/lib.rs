//! The system below its doors: what every role of imagelake is, whether its work comes in over
//! HTTP (`imagelake-server`) or from the Kafka stream (`imagelake-kafka`).
//!
//! - [`settings`]: the one typed `Settings`, with safe defaults.
//! - [`state`]: [`AppState`], what every role shares: the object store (`Arc<dyn
//!   ObjectStore>`, the same trait DataFusion reads through), the
//!   [`MetadataStore`](imagelake_metadata::MetadataStore), the
//!   [`WorkQueue`](imagelake_metadata::WorkQueue), the [`Clock`](imagelake_core::Clock), the
//!   limits and the metrics, assembled from the settings.
//! - [`ingest`]: the one upload path, with typed outcomes.
//! - [`worker`] and [`sweeper`]: processing and retention, as [`tasks`] of the one
//!   [`Supervisor`](tasks::Supervisor) every role runs its background work on.
//! - [`budget`], [`ratelimit`], [`keys`]: the limits and the keys.
//! - [`direct`]: direct-to-bucket uploads.
//! - [`lake`]: appending to the lake ([`lake::LakeDoor`]; the writer is `imagelake-lake`).
//! - [`health`], [`metrics`]: what `/readyz` and `/metrics` show.
//! - [`objects`]: object-store verbs the domain repeats.
//! - [`error`]: the one [`Error`], in the vocabulary clients see.
//!
//! Nothing here knows HTTP: the doors turn outcomes and errors into their own answers.

pub mod budget;
pub mod direct;
pub mod error;
pub mod health;
pub mod heartbeat;
pub mod ingest;
pub mod jobs;
pub mod keys;
pub mod lake;
pub mod metrics;
pub mod objects;
pub mod ratelimit;
pub mod settings;
pub mod state;
pub mod stream;
pub mod sweeper;
pub mod tasks;
pub mod worker;

pub use error::Error;
pub use settings::Settings;
pub use state::AppState;
