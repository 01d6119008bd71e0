//! What every role shares.

use std::sync::Arc;

use imagelake_core::{Clock, SystemClock};
use imagelake_metadata::{MetadataStore, SqliteStore, WorkQueue};
use object_store::{ObjectStore, local::LocalFileSystem};
use tokio::sync::{Notify, Semaphore};

use crate::{
    auth::AdminToken,
    metrics::Metrics,
    ratelimit::RateLimiter,
    settings::{ObjectBackend, Settings},
};

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub objects: Arc<dyn ObjectStore>,
    pub store: Arc<dyn MetadataStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub clock: Arc<dyn Clock>,
    pub admin: AdminToken,
    pub metrics: Arc<Metrics>,
    pub limiter: Arc<RateLimiter>,
    /// Wakes idle workers when new work was queued in this process.
    pub work_ready: Arc<Notify>,
    /// Room for upload bodies in memory, in MiB (see `Limits::max_inflight_upload_bytes`).
    pub upload_budget: Arc<Semaphore>,
}

impl AppState {
    /// The embedded default: local files and SQLite under `settings.data_dir`.
    pub fn embedded(settings: Settings) -> anyhow::Result<Self> {
        let objects = object_store(&settings)?;
        let sqlite = SqliteStore::open(&settings.data_dir.join("metadata.sqlite"))?;
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
        let upload_budget = Arc::new(Semaphore::new(budget_mib(&settings)));
        let limiter = Arc::new(RateLimiter::new(
            settings.limits.requests_per_second,
            settings.limits.burst,
        ));
        Self {
            settings: Arc::new(settings),
            objects,
            store,
            queue,
            clock,
            admin,
            metrics: Arc::new(Metrics::default()),
            limiter,
            work_ready: Arc::new(Notify::new()),
            upload_budget,
        }
    }
}

/// The object store the settings name.
pub fn object_store(settings: &Settings) -> anyhow::Result<Arc<dyn ObjectStore>> {
    match settings.objects.backend {
        ObjectBackend::Local => {
            let dir = settings.data_dir.join("objects");
            std::fs::create_dir_all(&dir)?;
            Ok(Arc::new(LocalFileSystem::new_with_prefix(&dir)?))
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
    let config = imagelake_gcp::GcsConfig::from_env(bucket);
    Ok(Arc::new(imagelake_gcp::GcsJsonStore::new(config)?))
}

#[cfg(not(feature = "gcp"))]
fn gcs(_: &Settings) -> anyhow::Result<Arc<dyn ObjectStore>> {
    anyhow::bail!("objects.backend = \"gcs\" needs a build with the `gcp` feature")
}

/// The upload budget in MiB; never smaller than one maximal body, so every upload can proceed.
fn budget_mib(settings: &Settings) -> usize {
    let limits = &settings.limits;
    let bytes = limits.max_inflight_upload_bytes.max(limits.max_body_bytes);
    usize::try_from(bytes.div_ceil(1 << 20))
        .unwrap_or(Semaphore::MAX_PERMITS)
        .min(Semaphore::MAX_PERMITS)
}

/// The MiB of upload budget a body of `bytes` takes.
pub fn budget_for(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1 << 20).max(1)).unwrap_or(u32::MAX)
}
