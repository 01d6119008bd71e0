//! Google Cloud backends for imagelake's seams: [`GcsJsonStore`] for objects,
//! [`FirestoreStore`] for metadata and [`PubSubQueue`] for processing work fed by the bucket's
//! notifications (its backlog from Cloud Monitoring: [`Backlog`]), all over Google's REST APIs.
//!
//! [`GcsJsonStore`] is an [`object_store::ObjectStore`] over the GCS **JSON API**. The
//! `object_store` crate's own GCS client writes through the XML API, which the GCS emulator
//! (fake-gcs-server) does not implement; the JSON API is the one both real GCS and the emulator
//! serve, so the same code is tested here and runs in production. The rest of imagelake keeps
//! holding an `Arc<dyn ObjectStore>` and does not know which store it has.

mod auth;
mod error;
mod firestore;
mod gcs;
mod monitoring;
pub mod oidc;
mod pubsub;
mod queue;
pub mod signing;

pub use auth::TokenSource;
pub use error::{Error, Result};
pub use firestore::{FirestoreConfig, FirestoreStore};
pub use gcs::{GcsConfig, GcsJsonStore};
pub use monitoring::Backlog;
pub use pubsub::{DeadLetter, ObjectEvent, PubSub, Received};
pub use queue::{PubSubQueue, QueueConfig, Work, work_of};
