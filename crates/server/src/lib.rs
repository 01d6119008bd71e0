//! The imagelake roles on top of the seams: the HTTP API, the processing workers and the
//! retention sweeper, wired together by [`serve`].
//!
//! Everything a role needs sits in [`AppState`]: the object store (`Arc<dyn ObjectStore>`, the same
//! trait DataFusion reads through), the [`MetadataStore`](imagelake_metadata::MetadataStore), the
//! [`WorkQueue`](imagelake_metadata::WorkQueue) and the [`Clock`](imagelake_core::Clock). Tests
//! assemble the same state with a manual clock or a fault-injecting store.

pub mod api;
pub mod auth;
pub mod budget;
pub mod connections;
pub mod direct;
pub mod error;
pub mod health;
pub mod ingest;
pub mod metrics;
pub mod ratelimit;
pub mod serve;
pub mod settings;
pub mod state;
pub mod sweeper;
pub mod worker;

pub use serve::{Running, start};
pub use settings::Settings;
pub use state::AppState;
