//! The lake for the admin (`GET /v1/admin/lake/tables`): every table in the bucket's `lake/`
//! folder, and for each hour of a recent window whether it is present and complete (its
//! `_SUCCESS` marker), its rows (from the marker), files and bytes (from the listing), and the
//! records its quarantine holds. Read from the object store alone, so any `api` replica answers
//! the same, whichever process writes the lake.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use axum::{
    Json,
    extract::{Query, State},
};
use futures::{StreamExt, TryStreamExt};
use imagelake_core::{Timestamp, paths};
use imagelake_runtime::AppState;
use object_store::{ObjectStore, ObjectStoreExt, path::Path};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::paging::parse_limit;
use crate::{auth::Admin, error::ApiError};

#[derive(Serialize, ToSchema)]
pub struct LakeOverview {
    /// The window: the hours starting in the last `hours` hours.
    hours: usize,
    tables: Vec<LakeTable>,
}

#[derive(Serialize, ToSchema)]
pub struct LakeTable {
    name: String,
    /// Rows of the window's complete hours.
    rows: u64,
    /// Files and bytes of the window's hours, and of the table's own files for a table kept
    /// whole, without hours (`customers`, `job_runs`).
    files: u64,
    bytes: u64,
    /// Records refused in the window's closed hours (its quarantine's rows).
    quarantined: u64,
    /// The window's hours that have files, a marker or quarantined records, newest first.
    hours: Vec<LakeHour>,
}

#[derive(Serialize, ToSchema)]
pub struct LakeHour {
    /// The hour's start (UTC).
    #[schema(value_type = String, format = DateTime)]
    hour: Timestamp,
    /// Its `_SUCCESS` marker is written: every source closed the hour.
    complete: bool,
    /// Rows, from the marker; null while the hour is open.
    rows: Option<u64>,
    files: u64,
    bytes: u64,
    /// Records refused in the hour, once it closed (its quarantine's marker counts them).
    quarantined: u64,
    /// When the marker was last written.
    closed_at: Option<String>,
}

/// What the marker says (written by the lake writer and the transforms).
#[derive(Deserialize)]
struct Marker {
    #[serde(default)]
    rows: u64,
    closed_at: Option<String>,
}

/// An hour folder's objects, as listed.
#[derive(Default)]
struct Listed {
    files: u64,
    bytes: u64,
    marker: Option<Path>,
}

/// Every table of the lake with its recent hours.
#[utoipa::path(get, path = "/v1/admin/lake/tables", tag = "lake", security(("bearer" = [])),
    params(("hours" = Option<u32>, Query, minimum = 1, maximum = 168, description = "the window, in hours back from now; default 24")),
    responses((status = 200, body = LakeOverview),
        (status = 400, body = super::ErrorBody, description = "`invalid_request`: a bad or unknown parameter"),
        (status = 404, body = super::ErrorBody, description = "called with a customer key")))]
pub async fn tables(
    _: Admin,
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<LakeOverview>, ApiError> {
    let mut hours = 24;
    for (name, value) in &params {
        match name.as_str() {
            "hours" => hours = parse_limit(name, value, 168)?,
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter `{other}`; use hours"
                )));
            }
        }
    }
    let now = state.clock.now();
    let since = now - chrono::Duration::hours(hours as i64);
    let objects = state.objects.as_ref();
    let lake = Path::from(paths::LAKE);
    let mut tables = Vec::new();
    for name in table_names(objects, &lake).await? {
        let (data, whole) = hours_of(objects, &lake.clone().join(name.as_str()), since).await?;
        let quarantine = lake.clone().join("quarantine").join(name.as_str());
        let (refused, _) = hours_of(objects, &quarantine, since).await?;
        let mut table = table(&state.objects, name, data, refused).await?;
        table.files += whole.files;
        table.bytes += whole.bytes;
        tables.push(table);
    }
    Ok(Json(LakeOverview { hours, tables }))
}

/// The table folders under `lake/`: those named as a table may be (not the writers' manifests,
/// not the quarantine).
async fn table_names(objects: &dyn ObjectStore, lake: &Path) -> Result<Vec<String>, ApiError> {
    let listing = objects
        .list_with_delimiter(Some(lake))
        .await
        .map_err(unavailable)?;
    let mut names: Vec<String> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_owned))
        .filter(|n| paths::LakeTable::parse(n).is_ok())
        .collect();
    names.sort();
    Ok(names)
}

/// The hour folders of `folder` that start at or after `since`, with their files and marker
/// (only the days, `dt=`, of the window are listed), and the folder's own Parquet files (a table
/// kept whole).
async fn hours_of(
    objects: &dyn ObjectStore,
    folder: &Path,
    since: Timestamp,
) -> Result<(BTreeMap<Timestamp, Listed>, Listed), ApiError> {
    let first_day = since.date_naive();
    let top = objects
        .list_with_delimiter(Some(folder))
        .await
        .map_err(unavailable)?;
    let mut whole = Listed::default();
    for file in top
        .objects
        .iter()
        .filter(|o| o.location.as_ref().ends_with(".parquet"))
    {
        whole.files += 1;
        whole.bytes += file.size;
    }
    let days = top.common_prefixes;
    let mut hours: BTreeMap<Timestamp, Listed> = BTreeMap::new();
    for day in days {
        let in_window = day
            .filename()
            .and_then(|name| name.strip_prefix("dt="))
            .and_then(|date| chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok())
            .is_some_and(|date| date >= first_day);
        if !in_window {
            continue;
        }
        let mut listing = objects.list(Some(&day));
        while let Some(meta) = listing.try_next().await.map_err(unavailable)? {
            let parts: Vec<_> = meta.location.parts().collect();
            let Some((file, parent)) = parts.split_last() else {
                continue;
            };
            let hour = paths::partition_hour(&Path::from_iter(parent.iter().cloned()));
            let Some(hour) = hour.filter(|h| *h >= since) else {
                continue;
            };
            let listed = hours.entry(hour).or_default();
            if file.as_ref() == "_SUCCESS" {
                listed.marker = Some(meta.location.clone());
            } else if file.as_ref().ends_with(".parquet") {
                listed.files += 1;
                listed.bytes += meta.size;
            }
        }
    }
    Ok((hours, whole))
}

async fn table(
    objects: &Arc<dyn ObjectStore>,
    name: String,
    data: BTreeMap<Timestamp, Listed>,
    refused: BTreeMap<Timestamp, Listed>,
) -> Result<LakeTable, ApiError> {
    let paths = data.values().chain(refused.values());
    let markers = read_markers(objects, paths.filter_map(|l| l.marker.clone()).collect()).await;
    let marker = |listed: &Listed| listed.marker.as_ref().and_then(|m| markers.get(m));
    let mut every: Vec<Timestamp> = data.keys().chain(refused.keys()).copied().collect();
    every.sort_unstable_by(|a, b| b.cmp(a));
    every.dedup();
    let hours: Vec<LakeHour> = every
        .into_iter()
        .map(|hour| {
            let listed = data.get(&hour);
            let written = listed.and_then(marker);
            LakeHour {
                hour,
                complete: written.is_some(),
                rows: written.map(|m| m.rows),
                files: listed.map_or(0, |l| l.files),
                bytes: listed.map_or(0, |l| l.bytes),
                quarantined: refused.get(&hour).and_then(marker).map_or(0, |m| m.rows),
                closed_at: written.and_then(|m| m.closed_at.clone()),
            }
        })
        .collect();
    Ok(LakeTable {
        name,
        rows: hours.iter().filter_map(|h| h.rows).sum(),
        files: hours.iter().map(|h| h.files).sum(),
        bytes: hours.iter().map(|h| h.bytes).sum(),
        quarantined: hours.iter().map(|h| h.quarantined).sum(),
        hours,
    })
}

/// The markers at `paths`, read 16 at a time; one that cannot be read or parsed is left out.
async fn read_markers(objects: &Arc<dyn ObjectStore>, paths: Vec<Path>) -> HashMap<Path, Marker> {
    let reads = paths.into_iter().map(|path| {
        let objects = Arc::clone(objects);
        async move {
            let bytes = objects.get(&path).await.ok()?.bytes().await.ok()?;
            let marker: Marker = serde_json::from_slice(&bytes).ok()?;
            Some((path, marker))
        }
    });
    let found: Vec<Option<(Path, Marker)>> = futures::stream::iter(reads)
        .buffer_unordered(16)
        .collect()
        .await;
    found.into_iter().flatten().collect()
}

fn unavailable(e: object_store::Error) -> ApiError {
    ApiError::new(
        imagelake_core::ErrorCode::Unavailable,
        format!("the object store did not answer: {e}"),
    )
}
