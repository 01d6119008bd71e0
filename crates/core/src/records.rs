//! Domain records as they are stored and as clients see them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use chrono::{DateTime, Utc};

use crate::{CustomerId, ErrorCode, ImageId, JobId, KeyId};

/// A customer account. The API keys live apart, stored only as hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Customer {
    #[schema(value_type = String, format = Uuid)]
    pub id: CustomerId,
    pub name: String,
    pub email: String,
    pub plan: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Customer {
    /// The email as compared for uniqueness: one customer per address, whatever its case.
    pub fn email_key(&self) -> String {
        self.email.trim().to_lowercase()
    }
}

/// An API key as stored: the SHA-256 of the secret, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    #[schema(value_type = String, format = Uuid)]
    pub id: KeyId,
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: CustomerId,
    /// A short, non-secret prefix of the key so people can tell keys apart.
    pub prefix: String,
    #[serde(skip)]
    pub hash: String,
    /// What the Postgres wire checks the key against; none for keys issued before it.
    #[serde(skip)]
    pub wire: Option<WireSecrets>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What the Postgres wire checks a key against, made from the key when it is issued (the key
/// is never stored): a SCRAM-SHA-256 verifier and an MD5 hash, in PostgreSQL's own formats
/// (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` and `md5<hex>`), with the key
/// id as the user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireSecrets {
    pub scram: String,
    pub md5: String,
}

/// A browser's sign-in: what a key was exchanged for at `POST /v1/session`. The browser holds
/// only the session's random token, in an `HttpOnly` cookie; the store keeps its SHA-256. Each
/// request through the session is checked against the key it came from (by `key_hash`), so
/// revoking the key ends the session at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The public id: how the session is listed and ended from another one.
    pub id: uuid::Uuid,
    /// SHA-256 of the cookie's token.
    pub token_hash: String,
    /// The key signed in with (the nil id for the admin token).
    pub key_id: KeyId,
    /// SHA-256 of that key, as its record stores it.
    pub key_hash: String,
    /// The token state-changing requests through the session must send in `X-CSRF-Token`.
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The browser's `User-Agent` at sign-in, to tell sessions apart in a listing.
    pub user_agent: Option<String>,
}

/// What one process of any role last said about itself: its background tasks and their
/// states, written to the metadata store every few seconds so that any `api` process can show
/// the tasks of every other one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Heartbeat {
    /// Unique per process start: `{host}-{pid}-{start}`.
    pub process: String,
    /// `serve`, `api`, `worker`, `scheduler`, `kafka-ingest` or `lake-writer`.
    pub role: String,
    pub host: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub beat_at: DateTime<Utc>,
    /// Set by the last beat of a process that stopped cleanly.
    pub stopped_at: Option<DateTime<Utc>>,
    pub tasks: Vec<TaskBeat>,
}

/// One background task of a [`Heartbeat`]'s process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TaskBeat {
    pub name: String,
    /// `running`, `idle` or `failing`.
    pub state: String,
    pub last_error: Option<String>,
    /// Steps tried again after a failure since the process started.
    pub restarts: u64,
    /// The process is not ready while this task fails.
    pub required: bool,
}

/// A live key found by its id: a customer's or a company one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyKey {
    Customer(ApiKey),
    Service(ServiceKey),
}

impl AnyKey {
    pub fn wire(&self) -> Option<&WireSecrets> {
        match self {
            Self::Customer(k) => k.wire.as_ref(),
            Self::Service(k) => k.wire.as_ref(),
        }
    }

    /// The SHA-256 of the key, as the HTTP door stores it.
    pub fn hash(&self) -> &str {
        match self {
            Self::Customer(k) => &k.hash,
            Self::Service(k) => &k.hash,
        }
    }
}

/// Which door an upload came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `POST /v1/images` (a body or a multipart part).
    Api,
    /// The internal Kafka image stream.
    Kafka,
    /// A direct upload to the bucket through a signed URL (`POST /v1/uploads`).
    Direct,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Kafka => "kafka",
            Self::Direct => "direct",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Api, Self::Kafka, Self::Direct]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// What a company key (not a customer's) may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// Posts records to the lake's declared tables, nothing else.
    Ingest,
    /// Queries the lake with SQL, nothing else.
    Analyst,
}

impl KeyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Analyst => "analyst",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Ingest, Self::Analyst]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    /// Whether a key of this role may query the lake (every door asks this), with the refusal
    /// in words when it may not.
    pub fn may_query(self) -> Result<(), String> {
        match self {
            Self::Analyst => Ok(()),
            other => Err(format!(
                "an {} key may not query the lake; use an analyst key",
                other.as_str()
            )),
        }
    }
}

/// A key of the company's own systems, with a role; stored, like customer keys, only as the
/// SHA-256 of its secret. It never reaches a customer's images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServiceKey {
    #[schema(value_type = String, format = Uuid)]
    pub key_id: KeyId,
    pub role: KeyRole,
    /// Who uses it (`billing`), for people.
    pub name: String,
    /// A short, non-secret prefix of the key.
    pub prefix: String,
    #[serde(skip)]
    pub hash: String,
    /// What the Postgres wire checks the key against; none for keys issued before it.
    #[serde(skip)]
    pub wire: Option<WireSecrets>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageStatus {
    /// Recorded for a direct-to-bucket upload (signed URL); the bytes have not arrived yet.
    PendingUpload,
    /// Stored and recorded; waiting for processing.
    Received,
    /// Renditions and facts are ready.
    Processed,
    /// Processing gave up; `error` says why.
    Failed,
}

impl ImageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingUpload => "pending_upload",
            Self::Received => "received",
            Self::Processed => "processed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::PendingUpload,
            Self::Received,
            Self::Processed,
            Self::Failed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// Why processing failed, in words a customer can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorInfo {
    #[schema(value_type = String)]
    pub code: ErrorCode,
    pub message: String,
}

/// Latitude and longitude in decimal degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Gps {
    pub lat: f64,
    pub lon: f64,
}

/// The EXIF facts worth indexing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExifFacts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub make: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Local time as the camera wrote it (`YYYY-MM-DDTHH:MM:SS`), with the camera's UTC offset
    /// appended when it recorded one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taken_at: Option<String>,
    /// EXIF orientation 1-8; already applied to `width`, `height` and the renditions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orientation: Option<u16>,
    /// Present only when the server is configured to keep locations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gps: Option<Gps>,
}

/// One stored rendition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RenditionInfo {
    pub width: u32,
    pub height: u32,
    pub content_type: String,
    pub bytes: u64,
}

/// Everything processing learns about an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessedFacts {
    /// Width as displayed (after orientation).
    pub width: u32,
    /// Height as displayed (after orientation).
    pub height: u32,
    pub format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exif: Option<ExifFacts>,
    /// 64-bit DCT perceptual hash, 16 hex digits.
    pub phash: String,
    /// `#rrggbb`.
    pub average_color: String,
    pub renditions: BTreeMap<String, RenditionInfo>,
}

/// An image record: what the API returns and the metadata store keeps. Its OpenAPI schema is
/// written out field by field in the server's `api::docs`, because the flattened facts appear
/// only once processing has run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: ImageId,
    pub customer_id: CustomerId,
    pub status: ImageStatus,
    pub bytes: u64,
    pub sha256: String,
    pub content_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    pub uploaded_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub facts: Option<ProcessedFacts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<DateTime<Utc>>,
    /// The object-store generation of the original that `facts` describe, where the store has
    /// generations (GCS); a notification for a newer generation is an overwrite.
    #[serde(default, skip)]
    pub generation: Option<i64>,
    /// The door it came through; absent on records made before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

impl Image {
    /// Whether the retention window has passed at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }
}

/// What a worker should do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub image_id: ImageId,
    pub customer_id: CustomerId,
    /// How many times this job was handed out, including this time.
    pub attempts: u32,
    /// The generation of the original this work is about, when a bucket notification made it.
    #[serde(default)]
    pub generation: Option<i64>,
}

/// A job that failed too often and waits for an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetter {
    #[schema(value_type = String, format = Uuid)]
    pub id: JobId,
    #[schema(value_type = String, format = Uuid)]
    pub image_id: ImageId,
    #[schema(value_type = String, format = Uuid)]
    pub customer_id: CustomerId,
    pub attempts: u32,
    pub last_error: String,
    pub failed_at: DateTime<Utc>,
}
