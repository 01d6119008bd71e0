//! Typed settings with safe defaults. The binary layers a TOML file, `IMAGELAKE_*` variables and
//! flags over [`Settings::default`].

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use imagelake_core::{duration::HumanDuration, paths};
use serde::Deserialize;

/// A secret that never prints.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Objects, the SQLite database and the generated admin token live here.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Proxies and load balancers (addresses or CIDR ranges) whose `X-Forwarded-For` is believed
    /// when limits per client address need the client's address. Empty: the peer is the client.
    pub trusted_proxies: Vec<String>,
    /// How long images and their metadata are kept.
    pub retention: HumanDuration,
    /// How often the sweeper deletes expired images.
    pub sweep_interval: HumanDuration,
    /// Taken from `IMAGELAKE_ADMIN_TOKEN`, or from `admin_token_file`; generated into
    /// `data_dir` when neither is given.
    pub admin_token: Option<Secret>,
    /// A file holding the admin token (a Kubernetes Secret or Secret Manager volume).
    pub admin_token_file: Option<PathBuf>,
    /// A token that reads `/metrics` and nothing else, for the scraper (`IMAGELAKE_METRICS_TOKEN`
    /// or `metrics_token_file`); without one only the admin token reads the metrics.
    pub metrics_token: Option<Secret>,
    pub metrics_token_file: Option<PathBuf>,
    pub limits: Limits,
    pub processing: Processing,
    pub objects: Objects,
    pub metadata: Metadata,
    pub queue: Queue,
    pub push: Push,
    pub gcp: Gcp,
    pub kafka: Kafka,
    pub lake: Lake,
    pub jobs: crate::jobs::JobsSettings,
    pub sql: Sql,
    pub web: Web,
}

/// The web app's sessions.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Web {
    /// How long a sign-in lasts.
    pub session_ttl: HumanDuration,
    /// Marks the session cookie `Secure`: set it when browsers reach the app over HTTPS (a TLS
    /// proxy or load balancer in front), so the cookie never travels in the clear.
    pub secure_cookies: bool,
    /// Pages send large files straight to the bucket through signed URLs (where URLs are
    /// signed). Turn it on once the bucket's CORS rule allows the app's origin
    /// (`deploy/cors.json`): without it browsers cannot send there.
    pub direct_uploads: bool,
    /// A folder of dashboard files (`*.toml`) shown beside the embedded ones; one named as an
    /// embedded dashboard replaces it. Read at each request, so a new file needs no restart.
    pub dashboards_dir: Option<std::path::PathBuf>,
}

impl Default for Web {
    fn default() -> Self {
        Self {
            session_ttl: HumanDuration(Duration::from_secs(12 * 3600)),
            secure_cookies: false,
            direct_uploads: false,
            dashboards_dir: None,
        }
    }
}

/// The SQL doors' limits, per query unless said.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Sql {
    /// A query still running after this is cancelled (`query_timeout`).
    pub timeout: HumanDuration,
    /// The memory a query may use for its operators and its answer (`query_too_large`).
    pub max_memory_bytes: u64,
    /// Rows past this are not sent; the answer says it was truncated.
    pub max_rows: u64,
    /// Queries one key may run at once; more are refused with `rate_limited`.
    pub max_concurrent_per_key: u32,
    /// Queries the process runs at once, all keys together (with `max_memory_bytes`, the
    /// bound on what SQL may take of the process).
    pub max_concurrent: u32,
    /// Where the PostgreSQL wire listens (`127.0.0.1:5432`); off when unset.
    pub pg_listen: Option<SocketAddr>,
    /// The PEM certificate chain and private key of the wire's TLS: both or neither. A file
    /// that does not load stops the process at start.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// How the wire checks a key over TLS: `scram-sha-256`, or `md5` or `password` (cleartext)
    /// for clients without SCRAM. Without TLS it is always `scram-sha-256`.
    pub pg_auth: PgAuth,
    /// Connections the wire holds at once; more are refused (`53300`).
    pub pg_max_connections: u32,
}

/// How the Postgres wire asks for the key over TLS.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PgAuth {
    #[default]
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    Md5,
    Password,
}

impl Default for Sql {
    fn default() -> Self {
        Self {
            timeout: HumanDuration(Duration::from_secs(30)),
            max_memory_bytes: 512 * 1024 * 1024,
            max_rows: 100_000,
            max_concurrent_per_key: 4,
            max_concurrent: 8,
            pg_listen: None,
            tls_cert: None,
            tls_key: None,
            pg_auth: PgAuth::ScramSha256,
            pg_max_connections: 100,
        }
    }
}

impl Sql {
    pub fn check(&self) -> Result<(), String> {
        if self.timeout.0.is_zero()
            || self.max_memory_bytes < 1 << 20
            || self.max_rows == 0
            || self.max_concurrent_per_key == 0
            || self.max_concurrent == 0
        {
            return Err("sql.timeout, sql.max_rows, sql.max_concurrent_per_key and sql.max_concurrent must be above 0, sql.max_memory_bytes at least 1 MiB".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("sql.tls_cert and sql.tls_key go together: set both, or neither".into());
        }
        if self.pg_auth != PgAuth::ScramSha256 && self.tls_cert.is_none() {
            return Err("sql.pg_auth = \"md5\" or \"password\" needs TLS (sql.tls_cert and sql.tls_key): keys are never checked that way in the clear".into());
        }
        if self.pg_max_connections == 0 {
            return Err("sql.pg_max_connections must be above 0".into());
        }
        Ok(())
    }
}

/// The data lake under `lake/` in the object store.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Lake {
    /// How long lake data is kept; the image retention when unset.
    pub retention: Option<HumanDuration>,
    /// How long after its end an hour waits for late records before it is closed.
    pub grace: HumanDuration,
    /// The writer's memory for rows not yet written out, in bytes, whatever the backlog; it
    /// writes out earlier rather than growing.
    pub max_buffer_bytes: u64,
    /// A Parquet file of an hour is closed and the next one begun past this size (at most a
    /// quarter of `max_buffer_bytes`).
    pub max_file_bytes: u64,
    /// Largest record (one line of NDJSON) a table accepts; larger ones are quarantined.
    pub max_record_bytes: u64,
    /// Largest body of `POST /v1/lake/{table}/records`.
    pub max_request_bytes: u64,
    /// Buffered API request records waiting for the log; beyond them, records are dropped and
    /// counted, never slowing a request.
    pub request_buffer: usize,
    /// The Kafka consumer group the lake writers share.
    pub group_id: String,
    /// Other company data: one entry per table.
    pub tables: Vec<imagelake_core::lake::TableDecl>,
}

impl Default for Lake {
    fn default() -> Self {
        Self {
            retention: None,
            grace: HumanDuration(Duration::from_secs(300)),
            max_buffer_bytes: 256 << 20,
            max_file_bytes: 64 << 20,
            max_record_bytes: 1 << 20,
            max_request_bytes: 16 << 20,
            request_buffer: 10_000,
            group_id: "imagelake-lake".to_owned(),
            tables: Vec::new(),
        }
    }
}

impl Lake {
    /// Refuses a table the writer could not honour, and two tables of one name or topic.
    pub fn check(&self) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        let mut topics = std::collections::BTreeSet::new();
        for table in &self.tables {
            table.check()?;
            if !names.insert(&table.name) {
                return Err(format!("lake table {} is declared twice", table.name));
            }
            if let Some(topic) = &table.topic
                && !topics.insert(topic)
            {
                return Err(format!("lake topic {topic} feeds two tables"));
            }
        }
        if self.max_buffer_bytes < 16 << 20 {
            return Err("lake.max_buffer_bytes must be at least 16 MiB".into());
        }
        Ok(())
    }

    /// The declared table called `name`.
    pub fn table(&self, name: &str) -> Option<&imagelake_core::lake::TableDecl> {
        self.tables.iter().find(|t| t.name == name)
    }
}

/// The internal image stream on Kafka (any Kafka-protocol broker).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Kafka {
    /// `host:port,...`; the stream is off without it.
    pub brokers: Option<String>,
    /// Image bytes (or claim-checks) with `customer-id` and other headers.
    pub images_topic: String,
    /// Where refused messages go, with `imagelake-error-code` and `imagelake-error-message`.
    pub dead_letter_topic: String,
    /// Lifecycle events (JSON, schema version 1), keyed by customer.
    pub events_topic: String,
    /// The API's request records (JSON) on their way to the lake's `api_requests` table.
    pub requests_topic: String,
    pub group_id: String,
    /// Claim-check objects must live under this prefix of the object store.
    pub claims_prefix: imagelake_core::paths::ClaimsPrefix,
    /// Any librdkafka setting, passed through (security, timeouts, ...).
    pub config: std::collections::BTreeMap<String, String>,
    /// librdkafka settings whose values are files' contents: the secrets (`sasl.password`,
    /// `sasl.oauthbearer.client.secret`, `ssl.key.password`), kept out of the settings file.
    pub config_files: std::collections::BTreeMap<String, PathBuf>,
}

impl Default for Kafka {
    fn default() -> Self {
        Self {
            brokers: None,
            images_topic: "imagelake.images".to_owned(),
            dead_letter_topic: "imagelake.images.dlq".to_owned(),
            events_topic: "imagelake.events".to_owned(),
            requests_topic: "imagelake.requests".to_owned(),
            group_id: "imagelake-ingest".to_owned(),
            claims_prefix: Default::default(),
            config: std::collections::BTreeMap::new(),
            config_files: std::collections::BTreeMap::new(),
        }
    }
}

/// `POST /v1/pubsub/push`: work delivered by a Pub/Sub push subscription (the Cloud Run style)
/// instead of pulled.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Push {
    pub enabled: bool,
    /// The audience the push subscription puts in its OIDC tokens (usually the endpoint's URL).
    pub audience: Option<String>,
    /// The push subscription's service account; tokens from any other account are refused.
    pub service_account_email: Option<String>,
    /// Where the token signing keys come from: Google's certificates by default.
    pub jwks_url: String,
    /// A local JSON Web Key Set instead of `jwks_url`.
    pub jwks_file: Option<PathBuf>,
}

impl Default for Push {
    fn default() -> Self {
        Self {
            enabled: false,
            audience: None,
            service_account_email: None,
            jwks_url: "https://www.googleapis.com/oauth2/v3/certs".to_owned(),
            jwks_file: None,
        }
    }
}

/// Google Cloud settings shared by the GCP backends.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Gcp {
    /// The project of the Firestore database and the Pub/Sub topics.
    pub project: Option<String>,
}

/// Where records, customers and keys are kept.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Metadata {
    pub backend: MetadataBackend,
    /// The Firestore database, for `backend = "firestore"`.
    pub database: String,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetadataBackend {
    /// `data_dir/metadata.sqlite`.
    #[default]
    Sqlite,
    /// Cloud Firestore (the emulator when `FIRESTORE_EMULATOR_HOST` is set).
    Firestore,
}

/// Where processing work comes from.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Queue {
    pub backend: QueueBackend,
    /// The topic the bucket publishes `OBJECT_FINALIZE` notifications to.
    pub topic: String,
    /// The pull subscription the workers share.
    pub subscription: String,
    pub dead_letter_topic: String,
    /// The subscription the admin API reads dead letters from.
    pub dead_letter_subscription: String,
    /// Create missing topics and subscriptions at start (the emulator; a first run).
    pub create: bool,
    /// Pull work from the subscription; `false` for a worker that only takes pushed work.
    pub pull: bool,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QueueBackend {
    /// Jobs in the SQLite database, written with the record.
    #[default]
    Embedded,
    /// The bucket's notifications through a Pub/Sub subscription.
    Pubsub,
}

impl Default for Objects {
    fn default() -> Self {
        Self {
            backend: ObjectBackend::Local,
            bucket: None,
            signing_key_file: None,
            signing_email: None,
            upload_url_ttl: HumanDuration(Duration::from_secs(900)),
        }
    }
}

impl Default for Metadata {
    fn default() -> Self {
        Self {
            backend: MetadataBackend::Sqlite,
            database: "(default)".to_owned(),
        }
    }
}

impl Default for Queue {
    fn default() -> Self {
        Self {
            backend: QueueBackend::Embedded,
            topic: "imagelake-objects".to_owned(),
            subscription: "imagelake-processing".to_owned(),
            dead_letter_topic: "imagelake-processing-dead".to_owned(),
            dead_letter_subscription: "imagelake-processing-dead".to_owned(),
            create: false,
            pull: true,
        }
    }
}

/// Where originals and renditions are kept.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Objects {
    pub backend: ObjectBackend,
    /// The GCS bucket, for `backend = "gcs"`.
    pub bucket: Option<String>,
    /// A service-account key file that signs direct-upload URLs (`POST /v1/uploads`).
    pub signing_key_file: Option<PathBuf>,
    /// Without a key file: the service account that signs through IAM `signBlob` (GKE Workload
    /// Identity; it needs `roles/iam.serviceAccountTokenCreator` on itself).
    pub signing_email: Option<String>,
    /// How long a direct-upload URL stays valid (at most 7 days).
    pub upload_url_ttl: HumanDuration,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ObjectBackend {
    /// Files under `data_dir/objects`.
    #[default]
    Local,
    /// A GCS bucket through the JSON API (the emulator when `STORAGE_EMULATOR_HOST` is set).
    Gcs,
}

/// The decode budget beyond an image's own bytes that every image may need: the renditions'
/// working memory and the decoders' metadata allowance (see `imaging::header`).
pub const MIN_DECODE_ROOM: u64 = 128 << 20;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted request body in bytes.
    pub max_body_bytes: u64,
    /// Largest accepted image in pixels (width x height), checked from the header.
    pub max_pixels: u64,
    /// Upload bodies held in memory at once, in bytes; further uploads wait for room. This and
    /// `max_decode_bytes` bound the process's memory, whatever the number of clients.
    pub max_inflight_upload_bytes: u64,
    /// The part of `max_inflight_upload_bytes` one API key may hold, so that one key's slow or
    /// stalled uploads never hold the whole budget. Default: a quarter of it (never less than
    /// `max_body_bytes`).
    pub max_inflight_upload_bytes_per_key: Option<u64>,
    /// Memory the workers may use at once to decode and process images (the original, the
    /// decoder's buffers and the pixels), shared by all workers. A large image waits for room;
    /// one that needs more than all of it is refused with `decode_limit_exceeded`.
    pub max_decode_bytes: u64,
    /// Sustained requests per second allowed per API key.
    pub requests_per_second: f64,
    /// Requests a key may make in a burst above the sustained rate.
    pub burst: u32,
    /// Sustained failed authentications per second allowed per client address; beyond them,
    /// requests without a valid key are answered `429` without a key lookup.
    pub auth_failures_per_second: f64,
    /// Failed authentications a client address may make in a burst.
    pub auth_failure_burst: u32,
    /// Longest time a client may take to send a request head (and longest idle keep-alive).
    pub header_read_timeout: HumanDuration,
    /// Longest wait for the next byte of a request body before `408`.
    pub body_idle_timeout: HumanDuration,
    /// Longest time for a whole request body before `408`.
    pub body_timeout: HumanDuration,
}

impl Limits {
    /// Refuses limits that would refuse every request or every image.
    pub fn check(&self) -> Result<(), String> {
        if self.max_body_bytes == 0 || self.max_pixels == 0 {
            return Err("limits.max_body_bytes and limits.max_pixels must be above 0".into());
        }
        if self.requests_per_second <= 0.0 || self.burst == 0 {
            return Err(
                "limits.requests_per_second must be above 0 and limits.burst at least 1".into(),
            );
        }
        if self.auth_failures_per_second <= 0.0 || self.auth_failure_burst == 0 {
            return Err(
                "limits.auth_failures_per_second must be above 0 and limits.auth_failure_burst at least 1"
                    .into(),
            );
        }
        let least = self.max_body_bytes.saturating_add(MIN_DECODE_ROOM);
        if self.max_decode_bytes < least {
            return Err(format!(
                "limits.max_decode_bytes must be at least limits.max_body_bytes + 128 MiB ({least} bytes): an image's own bytes and the working memory of its renditions"
            ));
        }
        Ok(())
    }

    /// The upload budget one API key may hold, in bytes.
    pub fn per_key_upload_bytes(&self) -> u64 {
        self.max_inflight_upload_bytes_per_key
            .unwrap_or(self.max_inflight_upload_bytes / 4)
            .max(self.max_body_bytes)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Processing {
    /// Images processed at once; 0 means one per CPU core.
    pub workers: usize,
    /// Attempts before a job moves to the dead letters.
    pub max_attempts: u32,
    /// First retry delay; doubles with each attempt up to five minutes.
    pub retry_backoff: HumanDurationMs,
    /// How long a worker owns a job before it is handed out again.
    pub lease: HumanDuration,
    /// Keep GPS positions in the EXIF facts (they never reach renditions).
    pub keep_gps: bool,
    /// How old an original without a record must be, at its last attempt, to be removed as the
    /// leftover of an upload that died before its record was written.
    pub orphan_grace: HumanDuration,
}

/// A duration in milliseconds, for settings that tests want below a second.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(transparent)]
pub struct HumanDurationMs(pub u64);

impl HumanDurationMs {
    pub fn get(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("imagelake-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            trusted_proxies: Vec::new(),
            retention: HumanDuration(Duration::from_secs(7 * 86_400)),
            sweep_interval: HumanDuration(Duration::from_secs(300)),
            admin_token: None,
            admin_token_file: None,
            metrics_token: None,
            metrics_token_file: None,
            limits: Limits::default(),
            processing: Processing::default(),
            objects: Objects::default(),
            metadata: Metadata::default(),
            queue: Queue::default(),
            push: Push::default(),
            gcp: Gcp::default(),
            kafka: Kafka::default(),
            lake: Lake::default(),
            jobs: crate::jobs::JobsSettings::default(),
            sql: Sql::default(),
            web: Web::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 50 * 1024 * 1024,
            max_pixels: 100_000_000,
            max_inflight_upload_bytes: 256 * 1024 * 1024,
            max_inflight_upload_bytes_per_key: None,
            max_decode_bytes: 512 * 1024 * 1024,
            requests_per_second: 20.0,
            burst: 100,
            auth_failures_per_second: 1.0,
            auth_failure_burst: 20,
            header_read_timeout: HumanDuration(Duration::from_secs(30)),
            body_idle_timeout: HumanDuration(Duration::from_secs(30)),
            body_timeout: HumanDuration(Duration::from_secs(600)),
        }
    }
}

impl Default for Processing {
    fn default() -> Self {
        Self {
            workers: 0,
            max_attempts: 5,
            retry_backoff: HumanDurationMs(1_000),
            lease: HumanDuration(Duration::from_secs(300)),
            keep_gps: false,
            orphan_grace: HumanDuration(Duration::from_secs(600)),
        }
    }
}

impl Processing {
    /// The worker count with 0 resolved to the number of cores.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            return self.workers;
        }
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}

impl Settings {
    /// The embedded metadata database (records, queue, event log).
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("metadata.sqlite")
    }

    /// How long lake data is kept: `[lake] retention`, or the image retention.
    pub fn lake_retention(&self) -> HumanDuration {
        self.lake.retention.unwrap_or(self.retention)
    }

    /// The bucket lifecycle rules that back up the sweepers, one per owner of a prefix: images
    /// (originals, renditions, claims) one day after the image retention has passed, in whole
    /// days rounded up, and the lake one day after the lake retention, so a longer lake
    /// retention is never cut by the image rule. `gcloud storage buckets update gs://BUCKET
    /// --lifecycle-file=...` takes them.
    pub fn lifecycle_rule(&self) -> serde_json::Value {
        let days = |d: &HumanDuration| d.0.as_secs().div_ceil(86_400) + 1;
        let images = [
            format!("{}/", paths::ORIGINALS),
            format!("{}/", paths::RENDITIONS),
            self.kafka.claims_prefix.to_string(),
        ];
        let delete = |age: u64, prefixes: &[String]| {
            serde_json::json!({
                "action": {"type": "Delete"},
                "condition": {"age": age, "matchesPrefix": prefixes},
            })
        };
        serde_json::json!({"rule": [
            delete(days(&self.retention), &images),
            delete(days(&self.lake_retention()), &[format!("{}/", paths::LAKE)]),
        ]})
    }

    /// Reads the secrets the `*_file` settings name (`admin_token_file`, `metrics_token_file`,
    /// `kafka.config_files`): the files a Kubernetes Secret or Secret Manager volume mounts. A
    /// token given as such (a variable) is not replaced; a librdkafka setting may come from the
    /// settings or a file, not both.
    pub fn read_secret_files(&mut self) -> Result<(), String> {
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path)
                .map(|text| text.trim().to_owned())
                .map_err(|e| format!("reading the secret file {}: {e}", path.display()))
                .and_then(|text| match text.is_empty() {
                    true => Err(format!("the secret file {} is empty", path.display())),
                    false => Ok(text),
                })
        };
        if let (None, Some(path)) = (&self.admin_token, &self.admin_token_file) {
            self.admin_token = Some(Secret(read(path)?));
        }
        if let (None, Some(path)) = (&self.metrics_token, &self.metrics_token_file) {
            self.metrics_token = Some(Secret(read(path)?));
        }
        for (key, path) in &self.kafka.config_files {
            if self.kafka.config.contains_key(key) {
                return Err(format!(
                    "kafka.config and kafka.config_files both set {key:?}: keep one"
                ));
            }
            let value = read(path)?;
            self.kafka.config.insert(key.clone(), value);
        }
        Ok(())
    }

    /// Whether processing work comes from the bucket's notifications rather than being queued
    /// by the API with the record.
    pub fn work_from_notifications(&self) -> bool {
        self.queue.backend == QueueBackend::Pubsub
    }

    /// Refuses combinations that cannot work, with what to change.
    pub fn check(&self) -> Result<(), String> {
        crate::jobs::catalog(self)?;
        let gcs = self.objects.backend == ObjectBackend::Gcs;
        if gcs && self.objects.bucket.as_deref().is_none_or(str::is_empty) {
            return Err("objects.backend = \"gcs\" needs objects.bucket".into());
        }
        if self.work_from_notifications() && !gcs {
            return Err(
                "queue.backend = \"pubsub\" takes its work from bucket notifications: set objects.backend = \"gcs\""
                    .into(),
            );
        }
        if self.metadata.backend == MetadataBackend::Firestore && !self.work_from_notifications() {
            return Err(
                "metadata.backend = \"firestore\" keeps no queue: set queue.backend = \"pubsub\""
                    .into(),
            );
        }
        if !self.queue.pull && !self.work_from_notifications() {
            return Err(
                "queue.pull = false needs queue.backend = \"pubsub\" (work then comes by push)"
                    .into(),
            );
        }
        if self.push.enabled && self.push.audience.as_deref().is_none_or(str::is_empty) {
            return Err(
                "push.enabled needs push.audience, the audience of the push subscription's tokens"
                    .into(),
            );
        }
        self.parsed_trusted_proxies()?;
        self.limits.check()?;
        self.sql.check()?;
        if self.web.session_ttl.0 < Duration::from_secs(60) {
            return Err("web.session_ttl must be at least 1m".into());
        }
        let needs_project =
            self.metadata.backend == MetadataBackend::Firestore || self.work_from_notifications();
        if needs_project && self.gcp.project.as_deref().is_none_or(str::is_empty) {
            return Err("Firestore and Pub/Sub need gcp.project".into());
        }
        self.lake.check()?;
        self.kafka.check_topics()?;
        self.check_lake_topics()
    }

    /// Each declared lake table reads a topic of its own: not another table's (declared or
    /// `imagelake.lake.<name>` by default), nor one of the stream's.
    fn check_lake_topics(&self) -> Result<(), String> {
        let kafka = &self.kafka;
        let mut taken: std::collections::BTreeMap<String, String> = [
            (&kafka.images_topic, "kafka.images_topic"),
            (&kafka.dead_letter_topic, "kafka.dead_letter_topic"),
            (&kafka.events_topic, "kafka.events_topic"),
            (&kafka.requests_topic, "kafka.requests_topic"),
        ]
        .into_iter()
        .map(|(topic, name)| (topic.clone(), name.to_owned()))
        .collect();
        for table in &self.lake.tables {
            let topic = table.source_topic();
            let user = format!("lake table {}", table.name);
            if let Some(other) = taken.insert(topic.clone(), user.clone()) {
                return Err(format!("{user} and {other} both use the topic {topic}"));
            }
        }
        Ok(())
    }
}

impl Settings {
    /// What the imaging crate may do under these settings.
    pub fn imaging_options(&self) -> imagelake_imaging::Options {
        imagelake_imaging::Options {
            max_pixels: self.limits.max_pixels,
            max_decode_bytes: self.limits.max_decode_bytes,
            keep_gps: self.processing.keep_gps,
        }
    }

    /// `trusted_proxies` as address ranges; a bare address is a range of one.
    pub fn parsed_trusted_proxies(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        format!("trusted_proxies: {entry:?} is not an IP address or CIDR range")
                    })
            })
            .collect()
    }
}

impl Kafka {
    /// Topic names Kafka accepts, and three different topics: events read as images (or images
    /// as dead letters) would go round in circles.
    fn check_topics(&self) -> Result<(), String> {
        let topics = [
            ("images_topic", &self.images_topic),
            ("dead_letter_topic", &self.dead_letter_topic),
            ("events_topic", &self.events_topic),
            ("requests_topic", &self.requests_topic),
        ];
        for (setting, topic) in topics {
            let legal = topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if topic.is_empty() || topic.len() > 249 || !legal || topic == "." || topic == ".." {
                return Err(format!(
                    "kafka.{setting} {topic:?} is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)"
                ));
            }
        }
        let (images, dead, events) = (
            &self.images_topic,
            &self.dead_letter_topic,
            &self.events_topic,
        );
        let requests = &self.requests_topic;
        let all = [images, dead, events, requests];
        if all.iter().collect::<std::collections::BTreeSet<_>>().len() < all.len() {
            return Err(
                "kafka.images_topic, dead_letter_topic, events_topic and requests_topic must differ"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_that_refuse_everything_are_refused() {
        assert_eq!(Settings::default().check(), Ok(()));
        let with = |change: fn(&mut Limits)| {
            let mut settings = Settings::default();
            change(&mut settings.limits);
            settings.check().unwrap_err()
        };
        assert!(with(|l| l.max_decode_bytes = 50_000_000).contains("max_decode_bytes"));
        assert!(with(|l| l.max_body_bytes = 0).contains("max_body_bytes"));
        assert!(with(|l| l.max_pixels = 0).contains("max_pixels"));
        assert!(with(|l| l.requests_per_second = 0.0).contains("requests_per_second"));
        assert!(with(|l| l.burst = 0).contains("burst"));
        assert!(with(|l| l.auth_failure_burst = 0).contains("auth_failure_burst"));
    }
}
