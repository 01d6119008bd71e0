//! What every role shares.

use std::sync::Arc;

use imagelake_core::{Clock, SystemClock};
use imagelake_metadata::{MetadataStore, SqliteStore, WorkQueue};
use object_store::{ObjectStore, local::LocalFileSystem};
use tokio::sync::{Notify, Semaphore};

use crate::{
    budget::{DecodeBudget, UploadBudget},
    direct::UploadUrls,
    keys::{AdminToken, KnownKeys},
    metrics::Metrics,
    ratelimit::RateLimiter,
    settings::{MetadataBackend, ObjectBackend, QueueBackend, Settings},
};

/// What the configured backends can do, decided once when the state is assembled, so the
/// upload path asks about abilities rather than backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// A duplicate lookup is cheap (a local database), so it is worth making before writing the
    /// bytes; where it is a network round trip (Firestore), the insert's own check suffices.
    pub precheck_duplicates: bool,
    /// The record's insert also queues its processing (the embedded queue); otherwise the
    /// bucket's notification of the new object is the job.
    pub enqueue_with_record: bool,
    /// Originals carry their customer and image ids and content type as object metadata,
    /// which the bucket's notification carries to the worker (GCS).
    pub tag_originals: bool,
}

impl Capabilities {
    pub fn of(settings: &Settings) -> Self {
        Self {
            precheck_duplicates: settings.metadata.backend == MetadataBackend::Sqlite,
            enqueue_with_record: !settings.work_from_notifications(),
            tag_originals: settings.objects.backend == ObjectBackend::Gcs,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    /// What the backends can do (see [`Capabilities`]).
    pub capabilities: Capabilities,
    pub objects: Arc<dyn ObjectStore>,
    pub store: Arc<dyn MetadataStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub clock: Arc<dyn Clock>,
    pub admin: AdminToken,
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<RateLimiter>,
    /// Failed authentications per client address.
    pub auth_failures: Arc<RateLimiter>,
    /// Keys that authenticated lately (see `auth`).
    pub known_keys: Arc<KnownKeys>,
    /// Session tokens that authenticated lately, kept apart so sessions never crowd out keys.
    pub known_sessions: Arc<KnownKeys>,
    /// Whose `X-Forwarded-For` is believed (`trusted_proxies`).
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// Wakes idle workers when new work was queued in this process.
    pub work_ready: Arc<Notify>,
    /// Room for upload bodies in memory (`limits.max_inflight_upload_bytes`, shared per key).
    pub upload_budget: Arc<UploadBudget>,
    /// Room for decoding images, shared by the workers (`limits.max_decode_bytes`).
    pub decode_budget: Arc<DecodeBudget>,
    /// One permit per image processed at once (`processing.workers`), shared by pulled and
    /// pushed work, so originals held in memory stay `workers` x `max_body_bytes` at most.
    pub processing_slots: Arc<Semaphore>,
    /// What the other parts of this process (the Kafka consumer) report for `/readyz`.
    pub health: Arc<crate::health::Health>,
    /// What each background task is doing (`/readyz`, `/metrics`).
    pub tasks: Arc<crate::tasks::TaskBoard>,
    /// Where records for the lake are appended, when this process has a lake log.
    pub lake: Option<Arc<dyn crate::lake::LakeDoor>>,
    /// The Kafka stream's administration, where brokers are set (`serve` and `api`).
    pub stream: Option<Arc<dyn crate::stream::StreamAdmin>>,
    /// Signs direct-upload URLs, when the object store and settings allow it.
    pub upload_urls: Option<Arc<dyn UploadUrls>>,
    /// Checks the tokens of pushed work, when `push.enabled`.
    #[cfg(feature = "gcp")]
    pub push: Option<Arc<imagelake_gcp::oidc::PushVerifier>>,
}

impl AppState {
    /// The backends the settings name: the embedded default, Google Cloud, or a mix.
    pub async fn from_settings(settings: Settings) -> anyhow::Result<Self> {
        settings.check().map_err(anyhow::Error::msg)?;
        let objects = object_store(&settings)?;
        let (store, queue) = metadata_and_queue(&settings).await?;
        let admin = AdminToken::load_or_generate(&settings)?;
        let upload_urls = upload_urls(&settings)?;
        let mut state = Self::assemble(
            settings,
            objects,
            store,
            queue,
            Arc::new(SystemClock),
            admin,
        );
        state.upload_urls = upload_urls;
        #[cfg(feature = "gcp")]
        {
            state.push = push_verifier(&state.settings)?;
        }
        #[cfg(not(feature = "gcp"))]
        if state.settings.push.enabled {
            anyhow::bail!("push.enabled needs a build with the `gcp` feature");
        }
        Ok(state)
    }

    /// The embedded default: local files and SQLite under `settings.data_dir`.
    pub fn embedded(settings: Settings) -> anyhow::Result<Self> {
        let objects = object_store(&settings)?;
        let sqlite = SqliteStore::open(&settings.sqlite_path())?;
        let admin = AdminToken::load_or_generate(&settings)?;
        Ok(Self::assemble(
            settings,
            objects,
            Arc::new(sqlite.clone()),
            Arc::new(sqlite),
            Arc::new(SystemClock),
            admin,
        ))
    }

    pub fn assemble(
        settings: Settings,
        objects: Arc<dyn ObjectStore>,
        store: Arc<dyn MetadataStore>,
        queue: Arc<dyn WorkQueue>,
        clock: Arc<dyn Clock>,
        admin: AdminToken,
    ) -> Self {
        let workers = settings.processing.worker_count();
        let limits = &settings.limits;
        let upload_budget = Arc::new(UploadBudget::new(limits));
        let decode_budget = Arc::new(DecodeBudget::new(limits.max_decode_bytes));
        let limiter = Arc::new(RateLimiter::new(limits.requests_per_second, limits.burst));
        let auth_failures = Arc::new(RateLimiter::new(
            limits.auth_failures_per_second,
            limits.auth_failure_burst,
        ));
        // `Settings::check` refuses what does not parse; unchecked settings (tests) trust no one.
        let trusted_proxies = Arc::new(settings.parsed_trusted_proxies().unwrap_or_default());
        Self {
            capabilities: Capabilities::of(&settings),
            settings: Arc::new(settings),
            objects,
            store,
            queue,
            clock,
            admin,
            metrics: Arc::new(Metrics::default()),
            limiter,
            auth_failures,
            known_keys: Arc::default(),
            known_sessions: Arc::default(),
            trusted_proxies,
            work_ready: Arc::new(Notify::new()),
            upload_budget,
            decode_budget,
            processing_slots: Arc::new(Semaphore::new(workers)),
            upload_urls: None,
            lake: None,
            stream: None,
            health: Arc::default(),
            tasks: Arc::default(),
            #[cfg(feature = "gcp")]
            push: None,
        }
    }
}

/// The object store the settings name. Local files drop the folders a delete empties, as a
/// bucket has no folders to leave behind: an image's and an hour's folders go with their last
/// object (a concurrent write re-creates a folder it finds gone).
pub fn object_store(settings: &Settings) -> anyhow::Result<Arc<dyn ObjectStore>> {
    match settings.objects.backend {
        ObjectBackend::Local => {
            let dir = settings.data_dir.join("objects");
            std::fs::create_dir_all(&dir)?;
            let files = LocalFileSystem::new_with_prefix(&dir)?.with_automatic_cleanup(true);
            Ok(Arc::new(files))
        }
        ObjectBackend::Gcs => gcs(settings),
    }
}

#[cfg(feature = "gcp")]
fn gcs(settings: &Settings) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let bucket = settings
        .objects
        .bucket
        .clone()
        .ok_or_else(|| anyhow::anyhow!("objects.backend = \"gcs\" needs objects.bucket"))?;
    let config = imagelake_gcp::GcsConfig::from_env(bucket)?;
    Ok(Arc::new(imagelake_gcp::GcsJsonStore::new(config)?))
}

#[cfg(not(feature = "gcp"))]
fn gcs(_: &Settings) -> anyhow::Result<Arc<dyn ObjectStore>> {
    anyhow::bail!("objects.backend = \"gcs\" needs a build with the `gcp` feature")
}

type Backends = (Arc<dyn MetadataStore>, Arc<dyn WorkQueue>);

async fn metadata_and_queue(settings: &Settings) -> anyhow::Result<Backends> {
    let sqlite = || SqliteStore::open(&settings.sqlite_path());
    let store: Arc<dyn MetadataStore> = match settings.metadata.backend {
        MetadataBackend::Sqlite => Arc::new(sqlite()?),
        MetadataBackend::Firestore => firestore(settings)?,
    };
    let queue: Arc<dyn WorkQueue> = match settings.queue.backend {
        QueueBackend::Embedded => Arc::new(sqlite()?),
        QueueBackend::Pubsub => pubsub(settings).await?,
    };
    Ok((store, queue))
}

#[cfg(feature = "gcp")]
fn firestore(settings: &Settings) -> anyhow::Result<Arc<dyn MetadataStore>> {
    let project = settings.gcp.project.clone().unwrap_or_default();
    let mut config = imagelake_gcp::FirestoreConfig::from_env(project)?;
    config.database = settings.metadata.database.clone();
    Ok(Arc::new(imagelake_gcp::FirestoreStore::new(config)?))
}

#[cfg(feature = "gcp")]
async fn pubsub(settings: &Settings) -> anyhow::Result<Arc<dyn WorkQueue>> {
    let q = &settings.queue;
    let project = settings.gcp.project.clone().unwrap_or_default();
    let pubsub = imagelake_gcp::PubSub::from_env(project.clone())?;
    let config = imagelake_gcp::QueueConfig {
        bucket: settings.objects.bucket.clone(),
        topic: q.topic.clone(),
        subscription: q.subscription.clone(),
        dead_letter_topic: q.dead_letter_topic.clone(),
        dead_letter_subscription: q.dead_letter_subscription.clone(),
        max_delivery_attempts: settings.processing.max_attempts.max(5),
        ack_deadline_seconds: u32::try_from(settings.processing.lease.0.as_secs()).unwrap_or(600),
    };
    let backlog = imagelake_gcp::Backlog::from_env(&project, &q.subscription)?;
    let queue = imagelake_gcp::PubSubQueue::new(pubsub, config).with_backlog(backlog);
    if q.create {
        queue.ensure().await?;
    }
    Ok(Arc::new(queue))
}

/// Signed URLs for direct uploads, when the bucket is on GCS and a signer is configured.
#[cfg(feature = "gcp")]
fn upload_urls(settings: &Settings) -> anyhow::Result<Option<Arc<dyn UploadUrls>>> {
    use imagelake_gcp::signing::{ServiceAccountKey, Signer};
    let o = &settings.objects;
    let (ObjectBackend::Gcs, Some(bucket)) = (o.backend, &o.bucket) else {
        return Ok(None);
    };
    let signer = match (&o.signing_key_file, &o.signing_email) {
        (Some(path), _) => Signer::Key(ServiceAccountKey::from_file(path)?),
        (None, Some(email)) => Signer::iam(email.clone()),
        (None, None) => return Ok(None),
    };
    let endpoint = imagelake_gcp::GcsConfig::from_env(bucket.clone())?.endpoint;
    Ok(Some(Arc::new(GcsUploadUrls {
        signer,
        endpoint,
        bucket: bucket.clone(),
    })))
}

#[cfg(not(feature = "gcp"))]
fn upload_urls(_: &Settings) -> anyhow::Result<Option<Arc<dyn UploadUrls>>> {
    Ok(None)
}

#[cfg(feature = "gcp")]
fn push_verifier(
    settings: &Settings,
) -> anyhow::Result<Option<Arc<imagelake_gcp::oidc::PushVerifier>>> {
    use imagelake_gcp::oidc::{KeySource, PushVerifier};
    let push = &settings.push;
    if !push.enabled {
        return Ok(None);
    }
    let source = match &push.jwks_file {
        Some(path) => KeySource::Fixed(std::fs::read_to_string(path)?),
        None => KeySource::Url(push.jwks_url.clone()),
    };
    let verifier = PushVerifier::new(
        push.audience.clone().unwrap_or_default(),
        push.service_account_email.clone(),
        source,
    )?;
    Ok(Some(Arc::new(verifier)))
}

/// V4 signed URLs on the configured bucket.
#[cfg(feature = "gcp")]
struct GcsUploadUrls {
    signer: imagelake_gcp::signing::Signer,
    endpoint: String,
    bucket: String,
}

#[cfg(feature = "gcp")]
#[async_trait::async_trait]
impl UploadUrls for GcsUploadUrls {
    async fn put_url(
        &self,
        object: &object_store::path::Path,
        headers: &std::collections::BTreeMap<String, String>,
        expires: std::time::Duration,
        now: imagelake_core::Timestamp,
    ) -> Result<String, crate::Error> {
        let request = imagelake_gcp::signing::UrlRequest {
            method: "PUT".to_owned(),
            bucket: self.bucket.clone(),
            object: object.to_string(),
            headers: headers.clone(),
            expires,
            now,
        };
        imagelake_gcp::signing::signed_url(&self.signer, &self.endpoint, &request)
            .await
            .map_err(|e| crate::Error::internal(&e))
    }

    fn csp_source(&self) -> Option<String> {
        // Signed URLs are path-style: `{endpoint}/{bucket}/{object}`.
        let origin = self.endpoint.trim_end_matches('/');
        let (scheme, host) = origin.split_once("://")?;
        let plain = matches!(scheme, "http" | "https")
            && !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        let bucket_ok = self
            .bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        (plain && bucket_ok).then(|| format!("{origin}/{}/", self.bucket))
    }
}

#[cfg(not(feature = "gcp"))]
fn firestore(_: &Settings) -> anyhow::Result<Arc<dyn MetadataStore>> {
    anyhow::bail!("metadata.backend = \"firestore\" needs a build with the `gcp` feature")
}

#[cfg(not(feature = "gcp"))]
async fn pubsub(_: &Settings) -> anyhow::Result<Arc<dyn WorkQueue>> {
    anyhow::bail!("queue.backend = \"pubsub\" needs a build with the `gcp` feature")
}
