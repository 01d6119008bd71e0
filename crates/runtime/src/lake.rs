//! The lake as the doors see it: a place to append records of a table and the API's request
//! records, durable before the door answers. The writer that turns them into hourly Parquet
//! lives in `imagelake-lake`, which implements [`LakeDoor`]; the doors (HTTP) only hold an
//! `Arc<dyn LakeDoor>`, so they know nothing of the log or of Parquet.

use async_trait::async_trait;
use bytes::Bytes;
use imagelake_core::{CustomerId, Timestamp, lake::Refusal};
use serde::Serialize;

use crate::Error;

/// What an append did: records kept (duplicates of records already kept count as kept, once)
/// and lines quarantined with their reasons.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Appended {
    pub accepted: u64,
    /// Of the accepted, records whose id was kept before: kept once, not again.
    pub duplicates: u64,
    pub quarantined: Vec<Refusal>,
}

/// One request the API answered, for the `api_requests` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiRequest {
    pub at: Timestamp,
    /// The route's template (`/v1/images/{id}`), never the raw path.
    pub route: String,
    pub method: String,
    pub status: u16,
    pub error_code: Option<String>,
    pub customer_id: Option<CustomerId>,
    /// `customer`, `admin`, `ingest` or `analyst`; absent when the request was not
    /// authenticated.
    pub key_role: Option<String>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub duration_ms: f64,
}

/// Appending to the lake.
#[async_trait]
pub trait LakeDoor: Send + Sync + 'static {
    /// Whether records may be posted to `table` (a declared table).
    fn has_table(&self, table: &str) -> bool;

    /// Appends the NDJSON `body` to `table`: each line is a record, checked against the table;
    /// the ones that do not fit are quarantined with their reason. Returns once every kept
    /// record and every quarantined line is durable.
    async fn append(
        &self,
        table: &str,
        body: Bytes,
        received_at: Timestamp,
    ) -> Result<Appended, Error>;

    /// Records a request the API answered, without waiting: when the buffer is full the record
    /// is dropped and counted, never slowing the request.
    fn record_request(&self, request: ApiRequest);
}
