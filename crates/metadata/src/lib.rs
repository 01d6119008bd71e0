//! Where image records, customers, API key hashes, idempotency keys and queued work live.
//!
//! Two small object-safe traits, held as `Arc<dyn ...>` by every role:
//!
//! - [`MetadataStore`]: the OLTP side (customers, keys, image records, idempotency). The query the
//!   whole product is built around, "images of customer X uploaded in a window, newest first,
//!   paginated", is [`MetadataStore::list_images`].
//! - [`WorkQueue`]: at-least-once delivery of processing work with leases, retries and a
//!   dead-letter state.
//!
//! [`sqlite::SqliteStore`] implements both on one database file, which is what makes the embedded
//! default crash-safe: an image record and its processing job are written in one transaction, so
//! a record is never left without its work or work without its record.
//!
//! Every lifecycle change (an image received, settled or removed; a customer created, changed or
//! deleted) writes its [`Event`] in the same transaction as the change: an outbox. A publisher
//! sends what [`MetadataStore::unpublished_events`] returns to the events topic and marks it
//! published; SQLite keeps published events as the local event log until retention purges them,
//! Firestore forgets them once they are on the topic. So no change is ever without its event, and
//! no event without its change.
//!
//! Firestore and Pub/Sub
//! implement the same traits for the cloud deployment, and `conformance` (feature `testing`, for
//! test builds only) holds the one suite
//! every backend must pass.

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod heartbeats;
pub mod runs;
pub mod sessions;
pub mod sqlite;

use std::time::Duration;

use async_trait::async_trait;
use imagelake_core::{
    CustomerId, ImageId, JobId, KeyId, Timestamp,
    events::{Event, EventType},
    records::{AnyKey, ApiKey, Customer, DeadLetter, Image, Job, ServiceKey},
};
use uuid::Uuid;

pub use heartbeats::HeartbeatStore;
pub use runs::{RunCursor, RunStore};
pub use sessions::SessionStore;
pub use sqlite::{LoggedEvent, SqliteStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("metadata backend failed: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A remembered response to a request carrying an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: String,
    /// SHA-256 of the request body: the same key with another body is a conflict.
    pub request_hash: String,
    pub status: u16,
    pub body: String,
    pub created_at: Timestamp,
}

/// A new image record, optionally with the idempotency key it answers.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub image: Image,
    pub idempotency: Option<IdempotencyRecord>,
}

/// What [`MetadataStore::insert_image`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum InsertOutcome {
    /// The record (and its job, when asked) was written.
    Created,
    /// The customer already has a live image with the same SHA-256; nothing was written.
    Duplicate(Box<Image>),
    /// The idempotency key was used before; nothing was written.
    Replay(IdempotencyRecord),
}

/// Why an image record goes away, which decides its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// By its customer, or with the customer.
    Deleted,
    /// By the retention sweeper.
    Expired,
}

impl Removal {
    pub fn event_type(self) -> EventType {
        match self {
            Self::Deleted => EventType::ImageDeleted,
            Self::Expired => EventType::ImageExpired,
        }
    }
}

/// Position after which a listing continues (newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub uploaded_at: Timestamp,
    pub id: ImageId,
}

/// A page request for a customer's images, newest first.
#[derive(Debug, Clone)]
pub struct ImageQuery {
    /// Inclusive lower bound on `uploaded_at`.
    pub since: Option<Timestamp>,
    /// Exclusive upper bound on `uploaded_at`.
    pub until: Option<Timestamp>,
    pub after: Option<Cursor>,
    pub limit: usize,
    /// Images expired at this instant are left out.
    pub now: Timestamp,
}

/// Customers, keys, image records and idempotency keys; the jobs' run history
/// ([`RunStore`]), browser sessions ([`SessionStore`]) and heartbeats ([`HeartbeatStore`]).
#[async_trait]
pub trait MetadataStore: RunStore + SessionStore + HeartbeatStore + Send + Sync + 'static {
    /// Creates a customer together with its first key (event `customer.created`). Emails are
    /// unique whatever their case ([`Customer::email_key`]): another customer's email fails
    /// with [`StoreError::AlreadyExists`], here and in [`update_customer`](Self::update_customer).
    async fn insert_customer(&self, customer: &Customer, key: &ApiKey) -> Result<()>;
    async fn get_customer(&self, id: CustomerId) -> Result<Option<Customer>>;
    /// Up to `limit` customers, newest first, after the customer `after` names (its creation
    /// time and id) when given (the console's listing, the SQL doors' `live.customers`).
    async fn list_customers(
        &self,
        after: Option<(Timestamp, CustomerId)>,
        limit: usize,
    ) -> Result<Vec<Customer>>;
    /// Fails with [`StoreError::NotFound`] when the customer does not exist (event
    /// `customer.updated`).
    async fn update_customer(&self, customer: &Customer) -> Result<()>;
    /// Removes the customer, its keys, image records, idempotency keys and queued work, at `at`
    /// (events `image.deleted` for each record left, then `customer.deleted`). The caller deletes
    /// the objects first (see the API's cascade).
    async fn delete_customer(&self, id: CustomerId, at: Timestamp) -> Result<()>;

    async fn insert_key(&self, key: &ApiKey) -> Result<()>;
    async fn list_keys(&self, customer: CustomerId) -> Result<Vec<ApiKey>>;
    /// Fails with [`StoreError::NotFound`] unless the key exists, belongs to the customer and is
    /// not revoked yet.
    async fn revoke_key(&self, customer: CustomerId, key: KeyId, at: Timestamp) -> Result<()>;
    /// The live (not revoked) key with this hash.
    async fn find_key(&self, hash: &str) -> Result<Option<ApiKey>>;
    /// Records a company key (role `ingest` or `analyst`).
    async fn insert_service_key(&self, key: &ServiceKey) -> Result<()>;
    /// Every company key, revoked ones too, oldest first.
    async fn list_service_keys(&self) -> Result<Vec<ServiceKey>>;
    /// Fails with [`StoreError::NotFound`] unless the key exists and is not revoked yet.
    async fn revoke_service_key(&self, key: KeyId, at: Timestamp) -> Result<()>;
    /// The live company key with this hash.
    async fn find_service_key(&self, hash: &str) -> Result<Option<ServiceKey>>;
    /// The live key, a customer's or a company one, with this id (the Postgres wire's user
    /// name).
    async fn find_key_by_id(&self, id: KeyId) -> Result<Option<AnyKey>>;
    /// The hashes of up to `limit` live keys: what a process learns at start about the keys in
    /// use (see the server's failed-authentication limit).
    async fn live_key_hashes(&self, limit: usize) -> Result<Vec<String>>;

    /// Writes a new image record atomically with its idempotency key and, when `enqueue` is set,
    /// its processing job. A live duplicate (same customer and SHA-256, not expired at
    /// `image.uploaded_at`) or a used idempotency key wins over the insert. A created record
    /// writes `image.received`.
    async fn insert_image(&self, new: &NewImage, enqueue: bool) -> Result<InsertOutcome>;
    async fn find_idempotent(
        &self,
        customer: CustomerId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>>;
    /// Records `record` as the answer to its key unless an answer is recorded already; returns
    /// that earlier answer then. For answers that write no image (a duplicate), so every later
    /// request with the key gets the first answer.
    async fn remember_answer(
        &self,
        customer: CustomerId,
        record: &IdempotencyRecord,
    ) -> Result<Option<IdempotencyRecord>>;
    async fn find_live_duplicate(
        &self,
        customer: CustomerId,
        sha256: &str,
        now: Timestamp,
    ) -> Result<Option<Image>>;
    /// The record whatever its expiry; callers decide whether to serve it.
    async fn get_image(&self, id: ImageId) -> Result<Option<Image>>;
    /// One customer's images, or every customer's (`None`: the SQL doors' `live.images`).
    async fn list_images(
        &self,
        customer: Option<CustomerId>,
        query: &ImageQuery,
    ) -> Result<Vec<Image>>;
    /// Every image id of a customer, expired or not.
    async fn customer_image_ids(&self, customer: CustomerId) -> Result<Vec<ImageId>>;
    /// Replaces a record's mutable fields (status, facts, error, processed_at, and what is known
    /// of its bytes). Settling it as processed or failed writes `image.processed` or
    /// `image.failed`.
    async fn update_image(&self, image: &Image) -> Result<()>;
    /// Deletes `image`'s record at `at`, writing `image.deleted` or `image.expired`; returns
    /// whether there was a record.
    async fn delete_image(&self, image: &Image, removal: Removal, at: Timestamp) -> Result<bool>;
    /// Up to `limit` records whose `expires_at` is at or before `now`, oldest first.
    async fn expired_images(&self, now: Timestamp, limit: usize) -> Result<Vec<Image>>;
    /// Up to `limit` direct uploads still waiting for their bytes that were recorded before
    /// `before`, oldest first.
    async fn pending_uploads(&self, before: Timestamp, limit: usize) -> Result<Vec<Image>>;
    /// Forgets idempotency keys created before `before`; returns how many.
    async fn purge_idempotency(&self, before: Timestamp) -> Result<u64>;
    /// Records an event that changes no entity (`image.duplicate`, `upload.refused`); one with
    /// an `event_id` written before is left as it is.
    async fn record_event(&self, event: &Event) -> Result<()>;
    /// Up to `limit` events not yet marked published, in the order they were written.
    async fn unpublished_events(&self, limit: usize) -> Result<Vec<Event>>;
    /// Marks events as delivered to the events topic.
    async fn mark_published(&self, ids: &[Uuid], at: Timestamp) -> Result<()>;
    /// Forgets events that occurred before `before`, published or not; returns how many.
    async fn purge_events(&self, before: Timestamp) -> Result<u64>;
    /// Takes or renews the lease `name` for `holder` until `until`; false while another holder's
    /// lease runs past `now`. For the tasks a scaled-out deployment runs once (the event
    /// publisher).
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool>;
    /// Whether the backend answers.
    async fn ping(&self) -> Result<()>;
}

/// Durable, at-least-once processing work.
#[async_trait]
pub trait WorkQueue: Send + Sync + 'static {
    async fn enqueue(&self, image: ImageId, customer: CustomerId, now: Timestamp) -> Result<JobId>;
    /// Hands out up to `max` ready jobs, each invisible to other leases for `lease_for`; a job
    /// whose lease runs out without [`complete`](Self::complete) is handed out again.
    async fn lease(&self, now: Timestamp, lease_for: Duration, max: usize) -> Result<Vec<Job>>;
    async fn complete(&self, job: JobId) -> Result<()>;
    /// Makes a leased job ready again at `at`, remembering the error.
    async fn retry_at(&self, job: JobId, error: &str, at: Timestamp) -> Result<()>;
    /// Moves a job to the dead-letter state.
    async fn dead_letter(&self, job: JobId, error: &str, now: Timestamp) -> Result<()>;
    /// Jobs waiting or in progress (not dead); `None` when the backend cannot count them
    /// (Pub/Sub, whose backlog is a Cloud Monitoring metric).
    async fn depth(&self) -> Result<Option<u64>>;
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>>;
    /// Makes a dead job ready again with a fresh attempt count; false when there is no such job.
    async fn redrive(&self, job: JobId, now: Timestamp) -> Result<bool>;
    /// Returns every leased job to the queue; for a single-process deployment at start-up, when
    /// no lease can belong to a live worker.
    async fn release_leases(&self) -> Result<u64>;
}
