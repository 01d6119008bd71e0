//! The `lake-retention` job: deletes every hour of the lake older than the lake retention, in
//! every table folder under `lake/` (the raw tables, their quarantines and the transformed
//! tables alike), found by listing, so a table that has left the settings still ages out.
//! An hour goes marker first, so a reader never takes a half-deleted hour for a complete one.

use std::sync::Arc;

use futures::StreamExt;
use imagelake_core::{Clock, jobs::Interval, paths};
use imagelake_runtime::{
    jobs::{Job, JobError, LAKE_RETENTION},
    objects::delete_if_present,
};
use object_store::{ObjectStore, path::Path};

pub struct LakeRetention {
    objects: Arc<dyn ObjectStore>,
    clock: Arc<dyn Clock>,
    retention: chrono::Duration,
}

impl LakeRetention {
    pub fn new(state: &imagelake_runtime::AppState) -> Self {
        Self {
            objects: state.objects.clone(),
            clock: state.clock.clone(),
            retention: chrono::Duration::from_std(state.settings.lake_retention().0)
                .unwrap_or(chrono::Duration::days(7)),
        }
    }

    /// Deletes the hours that start before `before`; returns how many.
    pub async fn expire(&self, before: chrono::DateTime<chrono::Utc>) -> anyhow::Result<u64> {
        let objects = self.objects.as_ref();
        let mut deleted = 0;
        let mut folders = vec![Path::from(paths::LAKE)];
        while let Some(folder) = folders.pop() {
            let listing = objects.list_with_delimiter(Some(&folder)).await?;
            for child in listing.common_prefixes {
                let name = child.filename().unwrap_or_default().to_owned();
                // The writers' manifests are no hours; tables and their quarantines are.
                if name == paths::LAKE_WRITERS {
                    continue;
                }
                if name.starts_with("dt=") {
                    deleted += expire_day(objects, &child, before).await?;
                } else {
                    folders.push(child);
                }
            }
        }
        Ok(deleted)
    }
}

/// Deletes the hours of one `dt=` folder that start before `before`.
async fn expire_day(
    objects: &dyn ObjectStore,
    day: &Path,
    before: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<u64> {
    let mut deleted = 0;
    let hours = objects.list_with_delimiter(Some(day)).await?;
    for hour in hours.common_prefixes {
        if paths::partition_hour(&hour).is_some_and(|h| h < before) {
            delete_hour(objects, &hour).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// Deletes one hour folder, its `_SUCCESS` first.
pub(crate) async fn delete_hour(objects: &dyn ObjectStore, folder: &Path) -> anyhow::Result<()> {
    let marker = paths::lake_success(folder);
    delete_if_present(objects, &marker).await?;
    let mut listing = objects.list(Some(folder));
    while let Some(meta) = listing.next().await {
        delete_if_present(objects, &meta?.location).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl Job for LakeRetention {
    fn name(&self) -> &'static str {
        LAKE_RETENTION
    }

    /// Deletes what is past the retention at the clock's now (the newest run covers every
    /// interval missed before it).
    async fn run(&self, _: Interval) -> Result<u64, JobError> {
        let before = self.clock.now() - self.retention;
        let deleted = self.expire(before).await?;
        if deleted > 0 {
            tracing::info!(hours = deleted, %before, "lake hours past the retention deleted");
        }
        Ok(deleted)
    }
}
