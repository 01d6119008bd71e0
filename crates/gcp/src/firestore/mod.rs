//! [`MetadataStore`] on Cloud Firestore, through its REST API.
//!
//! REST rather than gRPC: the same HTTP client as the GCS store, no protobuf toolchain in the
//! build, and every call is one request the emulator and production answer alike.
//!
//! Collections: `customers/{id}`, `api_keys/{sha256 of the key}` and `service_keys/{sha256 of the
//! key}` (a key lookup is one document
//! read), `images/{id}`, `idempotency/{customer}~{sha256 of the key}`, and
//! `dedup/{customer}~{sha256 of the bytes}` naming the image that holds those bytes, and
//! `customer_emails/{sha256 of the folded email}` naming the customer with that email, which
//! makes emails unique whatever their case. Timestamps are Firestore timestamps, which keep
//! microseconds, as every backend does.
//!
//! The checks that must not race (a live duplicate, a used idempotency key) are preconditions
//! on one commit, not reads in a transaction: the record, the `dedup` marker and the
//! idempotency key are created only if absent, so of concurrent uploads of the same bytes
//! exactly one commit succeeds and the others are refused at once; a loser then reads what won.
//! Reads inside a transaction take locks, and concurrent uploads of one image kept aborting each
//! other's transactions until they gave up. A `dedup` marker whose image is gone or expired is
//! stale: it is replaced at the `update_time` it was read with (so two replacements cannot both
//! win), and the TTL policy on its `expires_at` removes it. A customer's change, which must read
//! its old email to move its marker, is a transaction, tried again after a random wait when it
//! loses a race.
//!
//! Events go into `outbox/{event_id}` in the same commit as their change (the customer or image
//! write, or the insert transaction), and are deleted once the publisher has them on the events
//! topic: Kafka, not Firestore, is the event log of this deployment. An event written again by a
//! retried change is the same document, so the outbox never holds a change twice.
//!
//! Listing asks Firestore for `customer_id == X` ordered by `uploaded_at` then document id, both
//! descending, and leaves out expired records as it reads. The composite index this needs is
//! `deploy/firestore.indexes.json`.

mod client;
mod heartbeats;
mod runs;
mod sessions;
mod store;
mod values;

use imagelake_metadata::StoreError;

use crate::auth::{TokenSource, endpoint_from_env};

/// How often a transaction that lost a race is tried; the waits between tries grow from
/// [`RETRY_FIRST`] to [`RETRY_MAX`], each a random part of that (full jitter).
const TRANSACTION_ATTEMPTS: u32 = 10;
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(25);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// Waits before try `attempt` (from 1) of a transaction that lost a race.
async fn backoff(attempt: u32) {
    use rand::Rng;
    let cap = RETRY_FIRST
        .saturating_mul(1 << attempt.min(10))
        .min(RETRY_MAX);
    let wait = rand::rng().random_range(std::time::Duration::ZERO..=cap);
    tokio::time::sleep(wait).await;
}
/// Documents written per commit (Firestore allows 500).
const BATCH: usize = 400;

/// Which Firestore database and how to reach it.
#[derive(Debug)]
pub struct FirestoreConfig {
    pub project: String,
    pub database: String,
    /// `https://firestore.googleapis.com`, or the emulator's address.
    pub endpoint: String,
    pub tokens: TokenSource,
}

impl FirestoreConfig {
    /// Production Firestore with application default credentials, or the emulator named by
    /// `FIRESTORE_EMULATOR_HOST` without credentials.
    pub fn from_env(project: impl Into<String>) -> crate::Result<Self> {
        let (endpoint, tokens) = endpoint_from_env(
            "FIRESTORE_EMULATOR_HOST",
            "https://firestore.googleapis.com",
        )?;
        Ok(Self {
            project: project.into(),
            database: "(default)".to_owned(),
            endpoint,
            tokens,
        })
    }
}

#[derive(Debug)]
pub struct FirestoreStore {
    client: reqwest::Client,
    /// `projects/P/databases/D/documents`
    root: String,
    endpoint: String,
    tokens: TokenSource,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Outcome of a commit that Firestore refused.
enum Refused {
    /// The transaction lost a race; run it again.
    Aborted,
    /// A precondition failed (document exists / does not exist).
    Precondition,
    Other(StoreError),
}
