//! Processing workers: lease a job, fetch the original, run the pure imaging step off the async
//! runtime, store the renditions, update the record, and only then complete the job.
//!
//! Delivery is at least once and every step is idempotent: rendition keys are derived from the
//! image id, so a job that runs twice (a crash after storing renditions, an expired lease)
//! overwrites the same objects and leaves one set. A record no longer `received` is not touched
//! again. Bad images are a result (`failed` with a reason), not an error to retry; storage or
//! metadata errors are retried with exponential backoff and end in the dead letters after
//! `max_attempts`.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Instant};

use imagelake_core::{
    paths,
    records::{ErrorInfo, Image, ImageStatus, Job, ProcessedFacts, RenditionInfo},
};
use imagelake_imaging::{ImagingError, Options, Processed};
use object_store::{ObjectStoreExt, PutPayload, path::Path as ObjectPath};
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// How often idle workers look for work that was not announced (retries, other processes).
const POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs workers until `cancel`; in-flight images are finished before it returns.
pub async fn run(state: AppState, cancel: CancellationToken) {
    let slots = Arc::new(Semaphore::new(state.settings.processing.worker_count()));
    let mut tasks = JoinSet::new();
    while !cancel.is_cancelled() {
        while tasks.try_join_next().is_some() {}
        let free = slots.available_permits();
        let jobs = if free == 0 {
            Vec::new()
        } else {
            let lease = state.settings.processing.lease.0;
            state
                .queue
                .lease(state.clock.now(), lease, free)
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "could not lease work");
                    Vec::new()
                })
        };
        if jobs.is_empty() {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = state.work_ready.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
            continue;
        }
        for job in jobs {
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                break;
            };
            let state = state.clone();
            tasks.spawn(async move {
                handle(&state, job).await;
                drop(permit);
            });
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// Processes one leased job to its end: completed, retried later or dead-lettered.
pub async fn handle(state: &AppState, job: Job) {
    let result = process_job(state, &job).await;
    let queue = &state.queue;
    let settled = match result {
        Ok(()) => queue.complete(job.id).await,
        Err(error) if job.attempts >= state.settings.processing.max_attempts => {
            tracing::error!(job_id = %job.id, image_id = %job.image_id, attempts = job.attempts, %error, "job moved to the dead letters");
            state.metrics.dead_letters.inc();
            queue.dead_letter(job.id, &error, state.clock.now()).await
        }
        Err(error) => {
            let backoff = state.settings.processing.retry_backoff.get()
                * 2u32.saturating_pow(job.attempts.saturating_sub(1).min(16));
            let backoff = backoff.min(std::time::Duration::from_secs(300));
            tracing::warn!(job_id = %job.id, image_id = %job.image_id, attempts = job.attempts, %error, ?backoff, "job will be retried");
            let at = state.clock.now() + chrono::Duration::from_std(backoff).unwrap_or_default();
            queue.retry_at(job.id, &error, at).await
        }
    };
    if let Err(e) = settled {
        // The lease runs out and the job is handed out again.
        tracing::error!(job_id = %job.id, error = %e, "could not settle a job");
    }
}

/// The work itself; an `Err` is a transient failure worth retrying.
async fn process_job(state: &AppState, job: &Job) -> Result<(), String> {
    let Some(mut image) = state
        .store
        .get_image(job.image_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return record_missing(state, job).await;
    };
    if image.status != ImageStatus::Received || image.is_expired(state.clock.now()) {
        return Ok(());
    }
    let location = ObjectPath::from(paths::original(image.customer_id, image.id));
    let original = state
        .objects
        .get(&location)
        .await
        .map_err(|e| e.to_string())?;
    let bytes = original.bytes().await.map_err(|e| e.to_string())?;
    let options = Options {
        max_pixels: state.settings.limits.max_pixels,
        keep_gps: state.settings.processing.keep_gps,
    };
    let started = Instant::now();
    let outcome = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            imagelake_imaging::process(&bytes, &options)
        }))
    })
    .await
    .map_err(|e| e.to_string())?
    .unwrap_or_else(|_| {
        Err(ImagingError::Corrupt(
            "the decoder could not read this image".to_owned(),
        ))
    });
    state
        .metrics
        .processing_seconds
        .observe(started.elapsed().as_secs_f64());
    match outcome {
        Ok(processed) => {
            let facts = store_renditions(state, &image, &processed).await?;
            image.status = ImageStatus::Processed;
            image.facts = Some(facts);
            state.metrics.processed.inc();
        }
        Err(refused) => {
            image.status = ImageStatus::Failed;
            image.error = Some(ErrorInfo {
                code: refused.code(),
                message: refused.to_string(),
            });
            state.metrics.failure(refused.code().as_str());
            tracing::info!(image_id = %image.id, code = %refused.code(), reason = %refused, "image failed processing");
        }
    }
    let now = state.clock.now();
    image.processed_at = Some(now);
    state
        .store
        .update_image(&image)
        .await
        .map_err(|e| e.to_string())?;
    let latency = (now - image.uploaded_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
    state.metrics.end_to_end_seconds.observe(latency.max(0.0));
    Ok(())
}

/// Work whose record is missing: if the original is there, the work arrived before its record
/// (a bucket notification can beat the metadata write), so try again later; if the original is
/// gone too, the image was deleted and the work is done.
async fn record_missing(state: &AppState, job: &Job) -> Result<(), String> {
    let location = ObjectPath::from(paths::original(job.customer_id, job.image_id));
    match state.objects.head(&location).await {
        Ok(_) => Err("the image record is not there yet".to_owned()),
        Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

async fn store_renditions(
    state: &AppState,
    image: &Image,
    processed: &Processed,
) -> Result<ProcessedFacts, String> {
    let mut renditions = std::collections::BTreeMap::new();
    for r in &processed.renditions {
        let location = ObjectPath::from(paths::rendition(image.customer_id, image.id, r.kind));
        state
            .objects
            .put(&location, PutPayload::from(r.bytes.clone()))
            .await
            .map_err(|e| e.to_string())?;
        renditions.insert(
            r.kind.as_str().to_owned(),
            RenditionInfo {
                width: r.width,
                height: r.height,
                content_type: r.content_type.to_owned(),
                bytes: r.bytes.len() as u64,
            },
        );
    }
    Ok(ProcessedFacts {
        width: processed.width,
        height: processed.height,
        format: processed.format.name().to_owned(),
        exif: processed.exif.clone(),
        phash: processed.phash_hex(),
        average_color: processed.average_color.clone(),
        renditions,
    })
}
