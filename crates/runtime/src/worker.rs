//! Processing workers: lease a job, fetch the original, run the pure imaging step off the async
//! runtime, store the renditions, update the record, and only then complete the job.
//!
//! Delivery is at least once and every step is idempotent: rendition keys are derived from the
//! image id, so a job that runs twice (a crash after storing renditions, an expired lease)
//! overwrites the same objects and leaves one set. A record no longer `received` is not touched
//! again. Bad images are a result (`failed` with a reason), not an error to retry; storage or
//! metadata errors are retried with exponential backoff and end in the dead letters after
//! `max_attempts`.

use std::{
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use imagelake_core::{
    ErrorCode, paths,
    records::{ErrorInfo, Image, ImageStatus, Job, ProcessedFacts, RenditionInfo},
};
use imagelake_imaging::{ImagingError, Processed};
use object_store::{GetOptions, ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    objects::delete_if_present,
    state::AppState,
    tasks::{Step, Task},
};

/// How often idle workers look for work that was not announced (retries, other processes).
const POLL: Duration = Duration::from_millis(250);

/// The processing workers as one task: each step leases as many jobs as there are free
/// slots and starts them; waiting ends when work is announced in this process, a job ends, or
/// [`POLL`] passes (work from elsewhere: retries, other processes). At shutdown, the images in
/// hand are finished; queued work stays for the next start.
pub struct Workers {
    state: AppState,
    jobs: JoinSet<()>,
}

impl Workers {
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            jobs: JoinSet::new(),
        }
    }
}

#[async_trait::async_trait]
impl Task for Workers {
    async fn step(&mut self, _: &CancellationToken) -> anyhow::Result<Step> {
        while self.jobs.try_join_next().is_some() {}
        let state = &self.state;
        let free = state.processing_slots.available_permits();
        if free == 0 {
            return Ok(Step::Waiting);
        }
        let lease = state.settings.processing.lease.0;
        let jobs = match state.queue.lease(state.clock.now(), lease, free).await {
            Ok(jobs) => {
                state.health.report("queue", "ok", true);
                jobs
            }
            Err(e) => {
                // Workers without their queue do nothing: say so in /readyz.
                state.health.report("queue", "unreachable", true);
                return Err(anyhow::Error::new(e).context("could not lease work"));
            }
        };
        if jobs.is_empty() {
            return Ok(if self.jobs.is_empty() {
                Step::Idle
            } else {
                Step::Waiting
            });
        }
        for job in jobs {
            let Ok(permit) = Arc::clone(&state.processing_slots).try_acquire_owned() else {
                break;
            };
            let state = state.clone();
            self.jobs.spawn(async move {
                handle(&state, job).await;
                drop(permit);
            });
        }
        Ok(Step::Busy)
    }

    async fn wait(&mut self, stop: &CancellationToken) {
        tokio::select! {
            () = stop.cancelled() => {}
            () = self.state.work_ready.notified() => {}
            () = tokio::time::sleep(POLL) => {}
            Some(_) = self.jobs.join_next(), if !self.jobs.is_empty() => {}
        }
    }

    async fn finish(&mut self) {
        while self.jobs.join_next().await.is_some() {}
    }
}

/// Why a job could not finish now. Each is worth another attempt (the stores come back, the
/// record arrives); attempts are bounded by `max_attempts`, then the job is a dead letter.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("metadata store: {0}")]
    Store(#[from] imagelake_metadata::StoreError),
    #[error("object store: {0}")]
    Objects(#[from] object_store::Error),
    #[error("the image record is not there yet")]
    RecordNotYet,
    #[error("processing was interrupted: {0}")]
    Interrupted(#[from] tokio::task::JoinError),
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
            queue
                .dead_letter(job.id, &error.to_string(), state.clock.now())
                .await
        }
        Err(error) => {
            let backoff = state.settings.processing.retry_backoff.get()
                * 2u32.saturating_pow(job.attempts.saturating_sub(1).min(16));
            let backoff = backoff.min(std::time::Duration::from_secs(300));
            tracing::warn!(job_id = %job.id, image_id = %job.image_id, attempts = job.attempts, %error, ?backoff, "job will be retried");
            state.metrics.retries.inc();
            let at = state.clock.now() + chrono::Duration::from_std(backoff).unwrap_or_default();
            queue.retry_at(job.id, &error.to_string(), at).await
        }
    };
    if let Err(e) = settled {
        // The lease runs out and the job is handed out again.
        tracing::error!(job_id = %job.id, error = %e, "could not settle a job");
    }
}

/// The work itself; an `Err` is a transient failure worth retrying.
pub async fn process_job(state: &AppState, job: &Job) -> Result<(), JobError> {
    let found = state.store.get_image(job.image_id).await?;
    let Some(mut image) = (match found {
        Some(image) => Some(image),
        None => record_missing(state, job).await?,
    }) else {
        return Ok(());
    };
    if image.customer_id != job.customer_id || !needs_processing(&image, job, state.clock.now()) {
        tracing::debug!(image_id = %image.id, status = image.status.as_str(), generation = ?job.generation, "nothing to do");
        state.metrics.skipped.inc();
        return Ok(());
    }
    tracing::debug!(image_id = %image.id, job_id = %job.id, attempts = job.attempts, "processing");
    let Some(bytes) = fetch_original(state, &image, job.generation).await? else {
        state.metrics.skipped.inc();
        tracing::info!(image_id = %image.id, generation = ?job.generation, "the original changed or went away; a newer notification carries the rest");
        return Ok(());
    };
    // The record describes the bytes it was made from; bytes that arrived on their own (a signed
    // URL) or replaced the original are described again. An API upload's record already knows
    // its bytes and was checked for duplicates before it was written.
    let learned = image.status == ImageStatus::PendingUpload
        || (image.generation.is_some() && job.generation != image.generation);
    if learned {
        image.sha256 = hex::encode(Sha256::digest(&bytes));
        image.bytes = bytes.len() as u64;
    }
    image.generation = job.generation.or(image.generation);
    let outcome = match duplicate_of(state, &image, learned).await? {
        Some(refused) => Err(refused),
        None => run_imaging(state, bytes).await?,
    };
    match outcome {
        Ok(processed) => {
            let facts = store_renditions(state, &image, &processed).await?;
            image.status = ImageStatus::Processed;
            image.content_type = processed.format.content_type().to_owned();
            image.facts = Some(facts);
            image.error = None;
            state.metrics.processed.inc();
        }
        Err(refused) => {
            image.status = ImageStatus::Failed;
            image.facts = None;
            image.error = Some(refused);
            let code = image.error.as_ref().map_or("", |e| e.code.as_str());
            state.metrics.failure(code);
            tracing::info!(image_id = %image.id, code, "image failed processing");
        }
    }
    let now = state.clock.now();
    image.processed_at = Some(now);
    state.store.update_image(&image).await?;
    let latency = (now - image.uploaded_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
    state.metrics.end_to_end_seconds.observe(latency.max(0.0));
    tracing::info!(image_id = %image.id, status = image.status.as_str(), "image settled");
    Ok(())
}

/// Whether a job still has work to do: a record waiting for its bytes or its processing, or a
/// newer generation of an original that was processed before (an overwrite). A repeated
/// notification for the generation already processed is done.
fn needs_processing(image: &Image, job: &Job, now: chrono::DateTime<chrono::Utc>) -> bool {
    if image.is_expired(now) {
        return false;
    }
    match image.status {
        ImageStatus::PendingUpload | ImageStatus::Received => true,
        ImageStatus::Processed | ImageStatus::Failed => {
            matches!((job.generation, image.generation), (Some(new), Some(done)) if new > done)
        }
    }
}

/// The original's bytes, at the notified generation when there is one; `None` when that
/// generation is no longer there (overwritten or deleted since).
async fn fetch_original(
    state: &AppState,
    image: &Image,
    generation: Option<i64>,
) -> Result<Option<Bytes>, JobError> {
    let location = paths::original(image.customer_id, image.id);
    let options = GetOptions {
        version: generation.map(|g| g.to_string()),
        ..GetOptions::default()
    };
    match state.objects.get_opts(&location, options).await {
        Ok(found) => Ok(Some(found.bytes().await?)),
        Err(object_store::Error::NotFound { .. }) if generation.is_some() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The duplicate check an API upload makes before it answers, made here for bytes that went
/// straight to the bucket.
async fn duplicate_of(
    state: &AppState,
    image: &Image,
    learned: bool,
) -> Result<Option<ErrorInfo>, JobError> {
    if !learned {
        return Ok(None);
    }
    let existing = state
        .store
        .find_live_duplicate(image.customer_id, &image.sha256, state.clock.now())
        .await?;
    Ok(existing.filter(|e| e.id != image.id).map(|e| ErrorInfo {
        code: ErrorCode::Conflict,
        message: format!("the same image is already stored as {}", e.id),
    }))
}

/// Runs the pure imaging step off the async runtime, within the decode budget: the image's
/// headers say how much memory it takes, and that much of the workers' shared budget is held
/// while it runs. A panic in a decoder is a corrupt image.
async fn run_imaging(
    state: &AppState,
    bytes: Bytes,
) -> Result<Result<Processed, ErrorInfo>, JobError> {
    let options = state.settings.imaging_options();
    let refused = |e: ImagingError| {
        Ok(Err(ErrorInfo {
            code: e.code(),
            message: e.to_string(),
        }))
    };
    let needed = match imagelake_imaging::inspect(&bytes, &options) {
        Ok(inspection) => inspection.decode_bytes,
        // A broken header: the decoder says why, within the smallest reservation.
        Err(ImagingError::Corrupt(_)) => 0,
        Err(e) => return refused(e),
    };
    let Some(_room) = state.decode_budget.reserve(needed).await else {
        return refused(ImagingError::DecodeLimit {
            needed,
            limit: state.decode_budget.bytes(),
        });
    };
    let started = Instant::now();
    let outcome = tokio::task::spawn_blocking(move || {
        std::panic::catch_unwind(AssertUnwindSafe(|| {
            imagelake_imaging::process(&bytes, &options)
        }))
    })
    .await?
    .unwrap_or_else(|_| {
        Err(ImagingError::Corrupt(
            "the decoder could not read this image".to_owned(),
        ))
    });
    state
        .metrics
        .processing_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(outcome.map_err(|refused| ErrorInfo {
        code: refused.code(),
        message: refused.to_string(),
    }))
}

/// How long a worker waits in place for a record whose original is already there.
const RECORD_WAIT: Duration = Duration::from_secs(3);

/// Work whose record is missing. If the original is there, the work arrived before its record:
/// a bucket notification usually beats the record's commit by a few milliseconds, so the
/// record is awaited in place for a moment (cheaper than a redelivery), then the work is retried
/// later. An original that has waited longer than `orphan_grace` by the last attempt belongs to
/// an upload whose API call died before its record; it is removed. If the original is gone too,
/// the image was deleted and there is nothing to do (`Ok(None)`).
async fn record_missing(state: &AppState, job: &Job) -> Result<Option<Image>, JobError> {
    let location = paths::original(job.customer_id, job.image_id);
    let meta = match state.objects.head(&location).await {
        Ok(meta) => meta,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let deadline = tokio::time::Instant::now() + RECORD_WAIT;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Some(image) = state.store.get_image(job.image_id).await? {
            return Ok(Some(image));
        }
    }
    let processing = &state.settings.processing;
    let age = (state.clock.now() - meta.last_modified)
        .to_std()
        .unwrap_or_default();
    if job.attempts < processing.max_attempts || age < processing.orphan_grace.0 {
        return Err(JobError::RecordNotYet);
    }
    tracing::warn!(image_id = %job.image_id, customer_id = %job.customer_id, ?age, "removing an original that never got its record");
    delete_if_present(state.objects.as_ref(), &location).await?;
    Ok(None)
}

async fn store_renditions(
    state: &AppState,
    image: &Image,
    processed: &Processed,
) -> Result<ProcessedFacts, JobError> {
    let mut renditions = std::collections::BTreeMap::new();
    for r in &processed.renditions {
        let location = paths::rendition(image.customer_id, image.id, r.kind);
        state
            .objects
            .put(&location, PutPayload::from(r.bytes.clone()))
            .await?;
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
