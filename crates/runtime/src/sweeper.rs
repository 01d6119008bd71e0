//! Retention: images past `expires_at` are deleted everywhere (original, renditions, record),
//! direct uploads whose bytes never came end `failed`, idempotency keys older than 48 hours
//! are forgotten, and so are events and leftover claim-checks older than the retention window
//! (the lake keeps no more). On local files, an image's objects left without a record (a
//! process killed between writing an original and its record) go after the retention window
//! too; a bucket's lifecycle rules delete them on Google Cloud, where listing every image at
//! each sweep would cost more than it saves.
//! Reads already refuse expired images, so the sweep interval bounds only how long the bytes
//! linger, never what is served.

use std::collections::BTreeSet;

use chrono::Duration;
use futures::TryStreamExt;
use imagelake_core::jobs::Interval;
use imagelake_core::{
    ErrorCode, paths,
    records::{ErrorInfo, Image, ImageStatus},
};
use imagelake_metadata::Removal;
use object_store::{ObjectStore, ObjectStoreExt, path::Path as ObjectPath};

use crate::{
    jobs::{IMAGE_RETENTION, Job, JobError},
    objects::delete_if_present,
    settings::ObjectBackend,
    state::AppState,
};

const BATCH: usize = 200;
/// Idempotency keys are remembered at least 24 hours; twice that before they are purged.
const IDEMPOTENCY_WINDOW: Duration = Duration::hours(48);

/// Deletes an image's objects and then its record (with its `image.deleted` or `image.expired`
/// event). Missing objects are fine (a second run after a crash finds some already gone).
pub async fn remove_image(state: &AppState, image: &Image, removal: Removal) -> anyhow::Result<()> {
    for location in paths::image_objects(image.customer_id, image.id) {
        delete_if_present(state.objects.as_ref(), &location).await?;
    }
    let now = state.clock.now();
    state.store.delete_image(image, removal, now).await?;
    Ok(())
}

/// One pass: deletes everything expired at the clock's now; returns how many images.
pub async fn sweep_once(state: &AppState) -> anyhow::Result<usize> {
    let now = state.clock.now();
    let mut removed = 0;
    loop {
        let batch = state.store.expired_images(now, BATCH).await?;
        for image in &batch {
            remove_image(state, image, Removal::Expired).await?;
            state.metrics.expired.inc();
            tracing::info!(image_id = %image.id, customer_id = %image.customer_id, expires_at = %image.expires_at, "expired image deleted");
        }
        removed += batch.len();
        if batch.len() < BATCH {
            break;
        }
    }
    fail_abandoned_uploads(state).await?;
    state
        .store
        .purge_idempotency(now - IDEMPOTENCY_WINDOW)
        .await?;
    state.store.purge_sessions(now).await?;
    state
        .store
        .purge_heartbeats(now - crate::heartbeat::FORGET_AFTER)
        .await?;
    let retention = Duration::from_std(state.settings.retention.0).unwrap_or(Duration::days(7));
    // The local event log is the lake's source of events: kept as long as the lake keeps them.
    let lake_retention = state.settings.lake_retention().0;
    let events_kept = Duration::from_std(state.settings.retention.0.max(lake_retention))
        .unwrap_or(Duration::days(7));
    state.store.purge_events(now - events_kept).await?;
    purge_stale_claims(state, now - retention).await?;
    if state.settings.objects.backend == ObjectBackend::Local {
        purge_orphans(state, now - retention).await?;
    }
    Ok(removed)
}

/// Objects of images that have no record, older than `before`: what a crash between writing
/// an upload's bytes and its record left behind (an upload still being written is younger).
async fn purge_orphans(
    state: &AppState,
    before: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let mut old = BTreeSet::new();
    for prefix in [paths::ORIGINALS, paths::RENDITIONS] {
        let mut listing = state.objects.list(Some(&ObjectPath::from(prefix)));
        while let Some(meta) = listing.try_next().await? {
            if meta.last_modified < before {
                old.extend(paths::parse_image_object(meta.location.as_ref()));
            }
        }
    }
    for (customer, image) in old {
        let record = state.store.get_image(image).await?;
        if record.is_some_and(|r| r.customer_id == customer) {
            continue;
        }
        for location in paths::image_objects(customer, image) {
            delete_if_present(state.objects.as_ref(), &location).await?;
        }
        tracing::info!(image_id = %image, customer_id = %customer, "objects of an image without a record removed");
    }
    Ok(())
}

/// Claim-checks left under the claims prefix (refused by the stream, or written by a push whose
/// message never went out) go after the retention window, like every other image. One taken in
/// was removed then already.
async fn purge_stale_claims(
    state: &AppState,
    before: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let stale: Vec<ObjectPath> = state
        .objects
        .list(Some(state.settings.kafka.claims_prefix.path()))
        .try_filter_map(
            |meta| async move { Ok((meta.last_modified < before).then_some(meta.location)) },
        )
        .try_collect()
        .await?;
    for location in stale {
        delete_if_present(state.objects.as_ref(), &location).await?;
        tracing::info!(%location, "stale claim-check removed");
    }
    Ok(())
}

/// Direct uploads whose URL expired (plus `orphan_grace`) without bytes arriving end `failed`, so
/// a customer never waits on a record that cannot complete. One whose original did arrive is
/// left to its notification.
async fn fail_abandoned_uploads(state: &AppState) -> anyhow::Result<()> {
    let settings = &state.settings;
    let now = state.clock.now();
    let waited = settings.objects.upload_url_ttl.0 + settings.processing.orphan_grace.0;
    let before = now - Duration::from_std(waited).unwrap_or(Duration::days(1));
    for mut image in state.store.pending_uploads(before, BATCH).await? {
        let original = paths::original(image.customer_id, image.id);
        match state.objects.head(&original).await {
            Err(object_store::Error::NotFound { .. }) => {}
            Ok(_) => continue,
            Err(e) => return Err(e.into()),
        }
        image.status = ImageStatus::Failed;
        image.error = Some(ErrorInfo {
            code: ErrorCode::InvalidRequest,
            message: "the bytes were not uploaded before the upload URL expired".to_owned(),
        });
        image.processed_at = Some(now);
        state.store.update_image(&image).await?;
        tracing::info!(image_id = %image.id, customer_id = %image.customer_id, "direct upload abandoned");
    }
    Ok(())
}

/// The sweep as the `image-retention` job: each run deletes what has expired by its time.
pub struct ImageRetention {
    state: AppState,
}

impl ImageRetention {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

#[async_trait::async_trait]
impl Job for ImageRetention {
    fn name(&self) -> &'static str {
        IMAGE_RETENTION
    }

    async fn run(&self, _: Interval) -> Result<u64, JobError> {
        let removed = sweep_once(&self.state).await?;
        if removed > 0 {
            tracing::info!(removed, "retention sweep finished");
        }
        Ok(removed as u64)
    }
}
